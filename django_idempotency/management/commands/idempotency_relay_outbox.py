"""``manage.py idempotency_relay_outbox``: publish the outbox messages left unsent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...arguments import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RELAY_BATCH_SIZE,
    MAX_RELAY_BATCH_SIZE,
    MAX_RELAY_MAX_ATTEMPTS,
    RelayArgumentError,
    parse_relay_args,
)
from ...models.outbox import OutboxSendError, RelayResult


class Command(BaseCommand):
    help = (
        "Publish the Celery task messages of the outbox that were not published when their "
        "transaction committed, and delete them. Uses Celery's current app: the project's "
        "Celery module must be imported (as Django projects do in their package __init__.py). "
        "Safe to run from several places at once. A message that fails on its own is set "
        "aside, reported on stderr and parked after --max-attempts failures; the rest are "
        "published."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="SECONDS",
            help="Only messages written longer ago than this (default: the "
            "IDEMPOTENCY_OUTBOX_RELAY_AFTER setting; 0: every committed message).",
        )
        parser.add_argument(
            "--batch-size",
            help=f"Messages per transaction, 1 to {MAX_RELAY_BATCH_SIZE} "
            f"(default {DEFAULT_RELAY_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--max-attempts",
            help=f"Failed publishes after which a message is parked, 1 to "
            f"{MAX_RELAY_MAX_ATTEMPTS} (default {DEFAULT_MAX_ATTEMPTS}).",
        )
        parser.add_argument(
            "--database",
            help="Database alias of the outbox (default: where the router writes it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The same parser as the Celery task's: the two doors cannot disagree on what is valid.
        try:
            relay = parse_relay_args(
                older_than=options["older_than"],
                batch_size=options["batch_size"],
                database=options["database"],
                max_attempts=options["max_attempts"],
            )
        except RelayArgumentError as exc:
            raise CommandError(str(exc)) from None
        try:
            # Imported here: only this command needs Celery, and it says so if it is missing.
            from ...celery.outbox import current_app, relay_outbox
        except ImportError as exc:
            raise CommandError(
                f"The outbox relay needs Celery (pip install 'django-idempotency[celery]'): {exc}"
            ) from None
        try:
            result = relay_outbox(
                app=current_app(),
                older_than=relay.older_than,
                batch_size=relay.batch_size,
                using=relay.database,
                max_attempts=relay.max_attempts,
            )
        except (ImproperlyConfigured, OutboxSendError) as exc:
            raise CommandError(str(exc)) from exc
        self._report(result, verbose=bool(int(options["verbosity"])))

    def _report(self, result: RelayResult, *, verbose: bool) -> None:
        # What needs an operator goes to stderr whatever the verbosity: cron mails it.
        for item in result.set_aside:
            fate = "parked" if item.parked else "set aside for the next relay"
            self.stderr.write(
                f"Outbox message {item.task_id!r} {fate} after {item.attempts} failed "
                f"attempt{'' if item.attempts == 1 else 's'}: {item.error}"
            )
        if result.parked:
            self.stderr.write(
                f"{result.parked} outbox message{' is' if result.parked == 1 else 's are'} "
                f"parked on database {result.database!r}: the relay leaves "
                f"{'it' if result.parked == 1 else 'them'} alone until unparked "
                "(see the admin's outbox page)."
            )
        if verbose:
            sent = result.sent
            self.stdout.write(
                self.style.SUCCESS(
                    f"Published {sent} outbox message{'' if sent == 1 else 's'} "
                    f"on database {result.database!r}."
                )
            )
