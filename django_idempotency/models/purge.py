"""The purge: expired records and their events deleted in short batches, each its own
transaction, while live requests go on (``IdempotencyRecord.objects.purge_expired``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.db import connections, models, router, transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from ..arguments import DEFAULT_PURGE_BATCH_SIZE
from ..core import observers
from .batches import delete_rows, update_rows
from .clock import before, database_now
from .holds import holds_reference


@dataclass(frozen=True)
class PurgeResult:
    """What a purge did (or, on a dry run, would do). Progress callbacks get running totals."""

    database: str
    #: Records deleted; on a dry run, records that would be.
    deleted: int = 0
    #: Records past their TTL kept only to hold their reference, their response removed.
    stripped: int = 0
    #: Events deleted with their records or swept after them; on a dry run, that would be.
    events_deleted: int = 0
    #: Short transactions that deleted something (none on a dry run).
    batches: int = 0
    seconds: float = 0.0
    dry_run: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.deleted / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[PurgeResult], None]


def purge_expired(
    queryset: models.QuerySet[Any],
    *,
    batch_size: int = DEFAULT_PURGE_BATCH_SIZE,
    older_than: timedelta | None = None,
    scope: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> PurgeResult:
    """Delete the expired records of ``queryset``, and their events, in short batches.

    Each batch is its own transaction on ``queryset``'s write alias: it picks at most
    ``batch_size`` primary keys above the last batch's, then deletes their events and
    them. On PostgreSQL and MySQL the pick is ``FOR UPDATE SKIP LOCKED``, so a concurrent
    purge takes other rows instead of waiting or deleting twice, and a row a live request is
    changing is left for the next run (``batches.py``: how MySQL's writes stay on the
    batch). An in-flight claim is never touched: it is invisible outside its own
    transaction, and records in the in-flight state are excluded anyway.

    A success that still holds its business reference (``IDEMPOTENCY_REFERENCE_TTL``) is
    not deleted but stripped: its stored response and events go, a compact row stays and
    keeps refusing that reference; it is deleted once the reference lapses. On PostgreSQL
    and MySQL, without ``now``, expiry is judged by the database's clock.

    ``older_than`` also removes records created longer ago than that, whatever their TTL
    (stripping those that hold a reference: only the reference TTL releases one);
    ``scope`` restricts the purge to scopes starting with that prefix. Run it outside a
    transaction: inside one, every batch would be held until the outer block commits.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    IdempotencyRecord, IdempotencyEvent = _models()
    alias = queryset._db or router.db_for_write(queryset.model)  # type: ignore[attr-defined]
    started = time.monotonic()
    State = IdempotencyRecord.State
    # Expiry is judged by the database's clock (PostgreSQL, MySQL): an app server with a clock
    # running ahead must not purge records that are still live.
    clock = database_now(alias) if now is None else now

    record_due = Q(expires_at__lte=clock)
    event_due = Q(expires_at__lte=clock)
    if older_than is not None:
        cutoff = before(clock, older_than)
        record_due |= Q(created_at__lt=cutoff)
        event_due |= Q(at__lt=cutoff)
    due = queryset.using(alias).filter(record_due, state__in=[State.COMPLETED, State.HELD])
    # A success past its TTL keeps holding its business reference (REFERENCE_TTL): its row
    # stays, stripped of the stored response, and is deleted once the reference lapses.
    holding = holds_reference(clock)
    to_strip = due.filter(holding, state=State.COMPLETED)
    records = due.exclude(holding)
    events = IdempotencyEvent.objects.using(alias).all()
    if scope:
        to_strip = to_strip.filter(scope__startswith=scope)
        records = records.filter(scope__startswith=scope)
        events = events.filter(scope__startswith=scope)
    # Events left without a record: in-flight refusals (never linked) and the rare event
    # written just after its record was purged. They go once their own expiry passes.
    orphans = events.filter(event_due).filter(
        Q(record__isnull=True)
        | ~Exists(IdempotencyRecord.objects.using(alias).filter(pk=OuterRef("record_id")))
    )
    result = PurgeResult(database=alias, dry_run=dry_run)
    # Measured before the pass deletes it, and only when something reports it.
    oldest_due = _oldest_due(due, holding) if observers.observers() and not dry_run else None

    if dry_run:
        return replace(
            result,
            deleted=records.count(),
            stripped=to_strip.count(),
            events_deleted=events.filter(
                Q(record__in=records.values("pk")) | Q(record__in=to_strip.values("pk"))
            ).count()
            + orphans.count(),
            seconds=time.monotonic() - started,
        )

    def report(**counts: int) -> None:
        nonlocal result
        result = replace(
            result,
            deleted=result.deleted + counts.get("deleted", 0),
            stripped=result.stripped + counts.get("stripped", 0),
            events_deleted=result.events_deleted + counts.get("events_deleted", 0),
            batches=result.batches + 1,
            seconds=time.monotonic() - started,
        )
        if progress is not None:
            progress(result)

    def delete_events_of(ids: list[int]) -> int:
        # A batch's records are locked by it: no lookup can add an event to them meanwhile.
        return delete_rows(IdempotencyEvent, ids, alias, by="record_id")

    def strip_records(ids: list[int]) -> None:
        events_gone = delete_events_of(ids)
        count = update_rows(
            IdempotencyRecord,
            ids,
            alias,
            state=State.HELD,
            response_headers=[],
            response_body=b"",
        )
        report(stripped=count, events_deleted=events_gone)

    def delete_records(ids: list[int]) -> None:
        events_gone = delete_events_of(ids)
        records_gone = delete_rows(IdempotencyRecord, ids, alias)
        report(deleted=records_gone, events_deleted=events_gone)

    def delete_orphans(ids: list[int]) -> None:
        report(events_deleted=delete_rows(IdempotencyEvent, ids, alias))

    _in_batches(to_strip, alias, batch_size, strip_records)
    _in_batches(records, alias, batch_size, delete_records)
    _in_batches(orphans, alias, batch_size, delete_orphans)
    result = replace(result, seconds=time.monotonic() - started)
    if observers.observers():
        _report_purge(result, oldest_due)
    return result


def _oldest_due(due: models.QuerySet[Any], holding: Q) -> datetime | None:
    """When the longest-waiting record this pass removes became due: a success at its
    expiry, a stripped row once its reference lapsed. One aggregate over the due rows, which
    the pass reads anyway."""
    State = due.model.State
    found = due.aggregate(
        completed=Min("expires_at", filter=Q(state=State.COMPLETED)),
        held=Min("reference_expires_at", filter=Q(state=State.HELD) & ~holding),
    )
    moments = [moment for moment in found.values() if moment is not None]
    return min(moments) if moments else None


def _report_purge(result: PurgeResult, oldest_due: datetime | None) -> None:
    lag = 0.0 if oldest_due is None else (timezone.now() - oldest_due).total_seconds()
    observers.report_backlog(
        result.database,
        {
            "purge_lag_seconds": max(lag, 0.0),
            "purge_backlog_records": float(result.deleted + result.stripped),
            "purge_last_pass_timestamp_seconds": time.time(),
        },
    )


def _in_batches(
    queryset: models.QuerySet[Any],
    alias: str,
    batch_size: int,
    delete: Callable[[list[int]], None],
) -> None:
    """Call ``delete`` with successive primary-key batches, each in its own transaction."""
    skip_locked = connections[alias].features.has_select_for_update_skip_locked
    last_pk = 0
    while True:
        with transaction.atomic(using=alias):
            batch = queryset.filter(pk__gt=last_pk).order_by("pk")
            if skip_locked:
                batch = batch.select_for_update(skip_locked=True)
            ids = list(batch.values_list("pk", flat=True)[:batch_size])
            if ids:
                delete(ids)
        if len(ids) < batch_size:
            return  # nothing left above this batch (or only rows someone else holds)
        # Keyset paging: the next batch starts after this one instead of rescanning rows
        # that were skipped (locked by someone else) or kept.
        last_pk = ids[-1]


def _models() -> tuple[Any, Any]:
    """The record and event models, from the app registry: ``records.py`` delegates its
    ``purge_expired`` here, so this module cannot import it back."""
    return (
        apps.get_model("django_idempotency", "IdempotencyRecord"),
        apps.get_model("django_idempotency", "IdempotencyEvent"),
    )
