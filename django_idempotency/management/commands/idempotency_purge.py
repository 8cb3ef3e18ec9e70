"""``manage.py idempotency_purge``: delete expired idempotency records in short batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...arguments import (
    DEFAULT_PURGE_BATCH_SIZE,
    MAX_PURGE_BATCH_SIZE,
    PurgeArgumentError,
    parse_purge_args,
)
from ...models import IdempotencyRecord
from ...models.purge import PurgeResult


class Command(BaseCommand):
    help = (
        "Delete expired idempotency records and their events in short batches, each its own "
        "transaction, so live requests are not held up. Safe to run from several places at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only count what would be deleted.",
        )
        parser.add_argument(
            "--batch-size",
            help=f"Records per transaction, 1 to {MAX_PURGE_BATCH_SIZE} "
            f"(default {DEFAULT_PURGE_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--older-than",
            metavar="AGE",
            help="Also delete records created longer ago than AGE (e.g. 7d, 12h, 1d12h), "
            "even if their TTL has not run out.",
        )
        parser.add_argument(
            "--database",
            help="Database alias to purge (default: where the router writes records).",
        )
        parser.add_argument(
            "--scope",
            metavar="PREFIX",
            help="Only purge records whose scope starts with PREFIX (e.g. 'payment-list|').",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # The same parser as the Celery task's: the two doors cannot disagree on what is valid.
        try:
            purge = parse_purge_args(
                batch_size=options["batch_size"],
                older_than=options["older_than"],
                scope=options["scope"],
                database=options["database"],
            )
        except PurgeArgumentError as exc:
            raise CommandError(str(exc)) from None
        verbosity = int(options["verbosity"])
        progress = _ProgressPrinter(self, every_batch=verbosity >= 2) if verbosity else None

        result = IdempotencyRecord.objects.using(purge.database).purge_expired(
            batch_size=purge.batch_size,
            older_than=purge.older_than,
            scope=purge.scope,
            dry_run=options["dry_run"],
            progress=progress,
        )
        if verbosity:
            self.stdout.write(self.style.SUCCESS(_summary(result)))


class _ProgressPrinter:
    """A line per batch, but only on runs that take more than one (or at -v 2)."""

    def __init__(self, command: BaseCommand, *, every_batch: bool) -> None:
        self.command = command
        self.every_batch = every_batch
        self.held: PurgeResult | None = None

    def __call__(self, result: PurgeResult) -> None:
        if result.batches == 1 and not self.every_batch:
            # A one-batch run needs no progress, only the summary: hold the line until a
            # second batch shows the run is a long one.
            self.held = result
            return
        if self.held is not None:
            self._write(self.held)
            self.held = None
        self._write(result)

    def _write(self, result: PurgeResult) -> None:
        self.command.stdout.write(
            f"batch {result.batches}: {result.deleted} records and {result.events_deleted} "
            f"events deleted so far ({result.seconds:.1f}s)"
        )


def _summary(result: PurgeResult) -> str:
    if result.dry_run:
        return (
            f"Dry run on database {result.database!r}: {result.deleted} expired records and "
            f"{result.events_deleted} events would be deleted."
        )
    rate = f", {result.rows_per_second:.0f} records/s" if result.deleted else ""
    return (
        f"Deleted {result.deleted} expired records and {result.events_deleted} events "
        f"in {result.batches} batch{'' if result.batches == 1 else 'es'} "
        f"on database {result.database!r} "
        f"({result.seconds:.2f}s{rate})."
    )
