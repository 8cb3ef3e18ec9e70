"""``manage.py idempotency_relay_outbox``: publish the outbox messages left unsent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_idempotency.outbox import OutboxSendError
from django_idempotency.outbox_args import (
    DEFAULT_RELAY_BATCH_SIZE,
    MAX_RELAY_BATCH_SIZE,
    RelayArgumentError,
    parse_relay_args,
)


class Command(BaseCommand):
    help = (
        "Publish the Celery task messages of the outbox that were not published when their "
        "transaction committed, and delete them. Uses Celery's current app: the project's "
        "Celery module must be imported (as Django projects do in their package __init__.py). "
        "Safe to run from several places at once."
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
            )
        except RelayArgumentError as exc:
            raise CommandError(str(exc)) from None
        try:
            # Imported here: only this command needs Celery, and it says so if it is missing.
            from django_idempotency.contrib.celery_outbox import current_app, relay_outbox
        except ImportError as exc:
            raise CommandError(
                f"The outbox relay needs Celery (pip install 'django-idempotency[celery]'): {exc}"
            ) from None
        try:
            sent = relay_outbox(
                app=current_app(),
                older_than=relay.older_than,
                batch_size=relay.batch_size,
                using=relay.database,
            )
        except (ImproperlyConfigured, OutboxSendError) as exc:
            raise CommandError(str(exc)) from exc
        if int(options["verbosity"]):
            self.stdout.write(
                self.style.SUCCESS(
                    f"Published {sent} outbox message{'' if sent == 1 else 's'} "
                    f"on database {relay.database!r}."
                )
            )
