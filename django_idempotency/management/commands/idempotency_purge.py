"""``manage.py idempotency_purge``: delete expired idempotency records in short batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, router

from django_idempotency.managers import DEFAULT_PURGE_BATCH_SIZE, PurgeResult, parse_age
from django_idempotency.models import IdempotencyRecord


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
            type=int,
            default=DEFAULT_PURGE_BATCH_SIZE,
            help=f"Records per transaction (default {DEFAULT_PURGE_BATCH_SIZE}).",
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
        batch_size = _positive_int(options["batch_size"])
        older_than = None
        if options["older_than"] is not None:
            try:
                older_than = parse_age(str(options["older_than"]))
            except ValueError as exc:
                raise CommandError(f"--older-than: {exc}") from None
        database = options["database"] or router.db_for_write(IdempotencyRecord) or DEFAULT_DB_ALIAS
        if database not in connections:
            raise CommandError(
                f"--database: unknown database {database!r}; configured: {', '.join(connections)}."
            )
        scope = options["scope"]
        if scope is not None and not str(scope).strip():
            raise CommandError("--scope: give a non-empty prefix, or leave the option out.")
        verbosity = int(options["verbosity"])
        progress = _ProgressPrinter(self, every_batch=verbosity >= 2) if verbosity else None

        result = IdempotencyRecord.objects.using(database).purge_expired(
            batch_size=batch_size,
            older_than=older_than,
            scope=scope,
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


def _positive_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"--batch-size: {value!r} is not a whole number.") from None
    if number < 1:
        raise CommandError(f"--batch-size: must be at least 1, not {number}.")
    return number


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
