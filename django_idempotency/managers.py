"""Query logic for idempotency records and events, and the one purge routine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connections, models, router, transaction
from django.db.models import (
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    Value,
)
from django.db.models.functions import Now
from django.utils import timezone

# Argument parsing lives in purge_args, shared by the command and the Celery task; the names
# stay importable from here.
from .purge_args import DEFAULT_PURGE_BATCH_SIZE as DEFAULT_PURGE_BATCH_SIZE
from .purge_args import parse_age as parse_age

if TYPE_CHECKING:
    from .models import IdempotencyEvent, IdempotencyRecord  # noqa: F401


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


class IdempotencyRecordQuerySet(models.QuerySet["IdempotencyRecord"]):
    def live(self, now: datetime | None = None) -> IdempotencyRecordQuerySet:
        return self.filter(expires_at__gt=now or timezone.now())  # type: ignore[no-any-return]

    def expired(self, now: datetime | None = None) -> IdempotencyRecordQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())  # type: ignore[no-any-return]

    def purge_expired(
        self,
        *,
        batch_size: int = DEFAULT_PURGE_BATCH_SIZE,
        older_than: timedelta | None = None,
        scope: str | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> PurgeResult:
        """Delete the expired records of this queryset, and their events, in short batches.

        Each batch is its own transaction on this queryset's write alias: it picks at most
        ``batch_size`` primary keys above the last batch's, then deletes their events and
        them. On PostgreSQL the pick is ``FOR UPDATE SKIP LOCKED``, so a concurrent purge takes
        other rows instead of waiting or deleting twice, and a row a live request is changing
        is left for the next run. An in-flight claim is never touched: it is invisible outside
        its own transaction, and records in the in-flight state are excluded anyway.

        A success that still holds its business reference (``IDEMPOTENCY_REFERENCE_TTL``) is
        not deleted but stripped: its stored response and events go, a compact row stays and
        keeps refusing that reference; it is deleted once the reference lapses. On PostgreSQL,
        without ``now``, expiry is judged by the database's clock.

        ``older_than`` also removes records created longer ago than that, whatever their TTL
        (stripping those that hold a reference: only the reference TTL releases one);
        ``scope`` restricts the purge to scopes starting with that prefix. Run it outside a
        transaction: inside one, every batch would be held until the outer block commits.
        """
        from .core.store import holds_reference
        from .models import IdempotencyEvent, IdempotencyRecord

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        alias = self._db or router.db_for_write(self.model)  # type: ignore[attr-defined]
        started = time.monotonic()
        State = IdempotencyRecord.State
        # Expiry is judged by the database's clock on PostgreSQL: an app server with a clock
        # running ahead must not purge records that are still live.
        clock: Any = now
        if clock is None:
            clock = Now() if connections[alias].vendor == "postgresql" else timezone.now()

        record_due = Q(expires_at__lte=clock)
        event_due = Q(expires_at__lte=clock)
        if older_than is not None:
            cutoff = _before(clock, older_than)
            record_due |= Q(created_at__lt=cutoff)
            event_due |= Q(at__lt=cutoff)
        due = self.using(alias).filter(record_due, state__in=[State.COMPLETED, State.HELD])
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

        def strip_records(ids: list[int]) -> None:
            events_gone = _raw_delete(IdempotencyEvent.objects.filter(record_id__in=ids), alias)
            stripped = IdempotencyRecord.objects.using(alias).filter(pk__in=ids)
            count = stripped.update(state=State.HELD, response_headers=[], response_body=b"")
            report(stripped=count, events_deleted=events_gone)

        def delete_records(ids: list[int]) -> None:
            events_gone = _raw_delete(IdempotencyEvent.objects.filter(record_id__in=ids), alias)
            records_gone = _raw_delete(IdempotencyRecord.objects.filter(pk__in=ids), alias)
            report(deleted=records_gone, events_deleted=events_gone)

        def delete_orphans(ids: list[int]) -> None:
            report(events_deleted=_raw_delete(IdempotencyEvent.objects.filter(pk__in=ids), alias))

        _in_batches(to_strip, alias, batch_size, strip_records)
        _in_batches(records, alias, batch_size, delete_records)
        _in_batches(orphans, alias, batch_size, delete_orphans)
        return replace(result, seconds=time.monotonic() - started)


def _before(clock: Any, age: timedelta) -> Any:
    """``clock - age``, where ``clock`` is a datetime or the database's ``Now()``."""
    if isinstance(clock, datetime):
        return clock - age
    return ExpressionWrapper(
        clock - Value(age, output_field=DurationField()), output_field=DateTimeField()
    )


class IdempotencyEventQuerySet(models.QuerySet["IdempotencyEvent"]):
    def about(self, record: IdempotencyRecord) -> IdempotencyEventQuerySet:
        """The events of one record, in-flight refusals (which carry no link) included."""
        return self.filter(  # type: ignore[no-any-return]
            about_record(
                pk=record.pk,
                scope=record.scope,
                key=record.key,
                reference=record.requested_reference,
                created_at=record.created_at,
            )
        )


def about_record(*, pk: Any, scope: Any, key: Any, reference: Any, created_at: Any) -> Q:
    """Events about a record, given its values or ``OuterRef``\\ s to them.

    An in-flight refusal waited for a claim that was not committed yet, so it has no link; it
    belongs to the record with its scope and key (or the reference it waited for), created
    before it.
    """
    waited_for = Q(key=key)
    if reference is not None:
        waited_for |= Q(reference=reference)
    in_flight = Q(record__isnull=True, kind="in_flight", scope=scope, at__gte=created_at)
    return Q(record=pk) | (in_flight & waited_for)


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


def _raw_delete(queryset: models.QuerySet[Any], alias: str) -> int:
    # One DELETE ... WHERE id IN (...): QuerySet.delete() would fall back to fetching every
    # row (response bodies included) as soon as any delete signal receiver is connected.
    return int(queryset._raw_delete(alias))
