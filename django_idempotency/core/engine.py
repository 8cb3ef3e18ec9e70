"""Exactly-once execution of one operation, independent of DRF.

``perform_once(operation, view)`` runs ``view`` at most once per (scope, key): the claim, the
view and the stored response share one transaction on ``operation.database``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import DatabaseError, Error, transaction
from django.http import HttpResponseBase
from django.utils import timezone

from ..conf import app_settings
from ..exceptions import (
    IdempotencyError,
    IssuedKeyExpired,
    KeyMismatch,
    ReferenceConflict,
    ReferenceHeld,
    RequestInFlight,
)
from ..models import IdempotencyRecord
from ..signals import request_conflicted, response_replayed, response_stored
from . import store
from .events import record_event
from .observers import Watch, watch
from .operation import Operation, _current
from .responses import StoredResponse

# A claim only loses to an expired record (removed, then retried) a handful of times at most.
MAX_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class _Blocker:
    """The committed record in the way of a claim, how it was found, and if it can replay."""

    record: IdempotencyRecord
    by_reference: bool
    replayable: bool


# What a claim attempt ends in: the record in the way, or the view's own response.
_Outcome = _Blocker | HttpResponseBase


def should_store(status: int, release_status_codes: frozenset[int] | None = None) -> bool:
    """Settled outcomes are stored; "nothing happened, fix and retry" ones release the key."""
    if release_status_codes is None:
        release_status_codes = app_settings.RELEASE_STATUS_CODES
    return status < 500 and status not in release_status_codes


def holds_reference(status: int, reference_status_codes: frozenset[int] | None = None) -> bool:
    """A stored answer that completes the operation keeps its reference; any other frees it."""
    if reference_status_codes is None:
        reference_status_codes = app_settings.REFERENCE_STATUS_CODES
    return status in reference_status_codes


def perform_once(operation: Operation, view: Callable[[], HttpResponseBase]) -> HttpResponseBase:
    """Run ``view`` once for the operation's key, or answer from what the first run stored.

    Raises ``IdempotencyError`` subclasses for refusals (mismatch, reference conflict, still in
    flight, not storable); every other exception from ``view`` propagates after rollback.
    """
    seen = watch(operation)
    token = _current.set(operation)
    try:
        outcome = _replay_or_claim(operation, view, seen)
    except store.WaitExpired:
        # On MySQL a deadlock or a stale snapshot rolls back the caller's whole transaction
        # (its savepoint too): there is nothing left to log the refusal in.
        if not transaction.get_connection(operation.database).needs_rollback:
            record_event(operation, "in_flight", None)
        _send_conflict(operation, None, "in_flight")
        _count(operation, seen, "in_flight")
        raise RequestInFlight() from None
    finally:
        _current.reset(token)
    return _finish(operation, outcome, seen)


def _replay_or_claim(
    operation: Operation, view: Callable[[], HttpResponseBase], seen: Watch
) -> _Outcome:
    # Claim first: a new key (nearly all traffic) goes straight to its claim; a claim that meets
    # a committed record finds it, inside the same transaction (_find_blocker). Measured
    # against looking the key up first in benchmarks/README.md ("Claim first").
    for _attempt in range(MAX_CLAIM_ATTEMPTS):
        with transaction.atomic(using=operation.database):
            outcome = _claim_and_run(operation, view, seen)
        if outcome is not None:
            return outcome
    # Expired records kept reappearing in the way; tell the client to come back shortly.
    raise store.WaitExpired


def _claim_and_run(
    operation: Operation, view: Callable[[], HttpResponseBase], seen: Watch
) -> _Outcome | None:
    now = timezone.now()
    with seen.span("claim"):
        started = time.monotonic() if seen else 0.0
        try:
            claimed = store.claim(operation, now)
        except store.WaitExpired:
            seen.waited(time.monotonic() - started)
            raise
        if claimed is None:
            blocker = _find_blocker(operation, now)
            if seen and blocker is not None and _completed_since(blocker.record, now):
                seen.waited(time.monotonic() - started)
            return blocker
    if _too_old(operation.key_expires_at, claimed.at):
        # Raised inside the claim's transaction: the claim is rolled back, nothing ran.
        raise IssuedKeyExpired()
    record_id = claimed.id

    with seen.span("view"):
        try:
            with _view_savepoint(operation.database):
                response = view()
        except Exception:
            seen.outcome("released")  # rolled back with the claim: the key is free again
            raise
    if not should_store(response.status_code, operation.release_status_codes):
        transaction.set_rollback(True, using=operation.database)
        seen.outcome("released")
        return response
    with seen.span("store"):
        try:
            stored = StoredResponse.capture(response)
            store.complete(
                operation,
                record_id=record_id,
                response=stored,
                keep_reference=holds_reference(stored.status, operation.reference_status_codes),
                now=timezone.now(),
                ttl=_lifetime(operation, claimed.at),
                reference_ttl=app_settings.REFERENCE_TTL,
            )
        except Exception:
            seen.outcome("released")  # not storable (a stream), or the write failed: rolled back
            raise
    _count(operation, seen, "stored")
    transaction.on_commit(
        partial(
            response_stored.send,
            sender=IdempotencyRecord,
            operation=operation,
            record_id=record_id,
            status=stored.status,
        ),
        using=operation.database,
    )
    return response


@contextmanager
def _view_savepoint(using: str) -> Iterator[None]:
    """The view's own savepoint, as a nested ``atomic()`` makes one, less its RELEASE.

    Whatever the view does to the transaction undoes its own writes only: when it leaves the
    transaction marked for rollback (DRF's exception handler under ATOMIC_REQUESTS, an
    ``IntegrityError`` it caught from the ORM), its writes and its ``on_commit`` hooks are
    rolled back to here, and the claim survives to store or release the answer. Otherwise the
    savepoint stays open until the COMMIT releases it: one round trip less per new key than
    ``atomic()``'s RELEASE (docs/benchmarks.md). An exception is left to the claim's block,
    which rolls everything back.
    """
    connection = transaction.get_connection(using)
    sid = connection.savepoint()
    if sid is None:  # a backend without savepoints
        with transaction.atomic(using=using):
            yield
        return
    # on_commit() ties the hooks registered from now on to the savepoint, as atomic() does.
    connection.savepoint_ids.append(sid)
    try:
        yield
    finally:
        connection.savepoint_ids.pop()
    if connection.closed_in_transaction:
        return  # the database rolled back by itself; the claim's block finds out
    if not connection.needs_rollback and store.transaction_failed(using):
        # A failed statement the view caught (a raw cursor's: nothing marked the rollback)
        # left the transaction refusing statements: atomic()'s RELEASE fails here, and it
        # rolls back to its savepoint and raises that failure. Do the same, on this path only.
        try:
            connection.savepoint_commit(sid)
        except DatabaseError:
            try:
                connection.savepoint_rollback(sid)
                connection.savepoint_commit(sid)
            except Error:
                connection.needs_rollback = True
            raise
    if connection.needs_rollback:
        connection.needs_rollback = False
        try:
            connection.savepoint_rollback(sid)
        except Error:
            # As atomic(): a rollback that fails (a lost connection) leaves the mark to the
            # claim's block instead of raising over the view's answer.
            connection.needs_rollback = True


def _too_old(key_expires_at: datetime | None, claimed_at: datetime) -> bool:
    """Whether a key that expires at ``key_expires_at`` is too old to start an operation
    claimed at ``claimed_at`` (the store's clock: the database's on PostgreSQL and MySQL)."""
    if key_expires_at is None:
        return False
    return _aware(claimed_at) > _aware(key_expires_at)


def _lifetime(operation: Operation, claimed_at: datetime) -> timedelta:
    """The record's TTL, stretched to outlive its issued key: the key's stamp comes from the
    issuing server's clock, which may run ahead of the store's, and a key that could still
    start an operation after its record expired would run that operation again."""
    if operation.key_expires_at is None:
        return operation.ttl
    return max(operation.ttl, _aware(operation.key_expires_at) - _aware(claimed_at))


def _count(operation: Operation, seen: Watch, outcome: str) -> None:
    """Count ``outcome`` when the database keeps what it wrote of it (the record, its counter,
    the event): a caller's rollback, a savepoint's, or DRF's of a refusal under
    ``ATOMIC_REQUESTS`` takes the count with it, so the two agree. Outside a transaction,
    at once. A released answer leaves nothing to keep: it is counted where it happens."""
    if seen:
        transaction.on_commit(partial(seen.outcome, outcome), using=operation.database)


def _completed_since(record: IdempotencyRecord, now: datetime) -> bool:
    """Whether ``record`` was stored after this claim began: the claim waited on its key (or
    reference) while it was in flight. The record is dated by the store's clock (the
    database's on PostgreSQL) and ``now`` by the app server's, so a wait shorter than their
    skew may be missed or one counted that was not: waits are telemetry, not records."""
    completed = record.completed_at
    return completed is not None and _aware(completed) >= _aware(now)


def _aware(moment: datetime) -> datetime:
    # With USE_TZ = False the store's clock reads naive local time.
    if timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, timezone.get_default_timezone())


def _find_blocker(operation: Operation, now: datetime) -> _Blocker | None:
    """The committed record the claim ran into: by key first, then by held reference.

    A reference is held past its record's expiry (``IDEMPOTENCY_REFERENCE_TTL``), so the
    reference lookup also finds records that can no longer replay; only then is what expired
    cleared away, and the key (never the reference) freed for the next attempt.
    """
    # The lookup logs this request's visit too, unless the event log is switched off.
    event_limit = app_settings.MAX_EVENTS_PER_RECORD if app_settings.RECORD_EVENTS else None
    find = partial(store.find_count_and_log, operation, now=now, event_limit=event_limit)
    found = find(by="key")
    if found is not None:
        return _Blocker(found.record, by_reference=False, replayable=found.replayable)
    if operation.reference is not None:
        found = find(by="reference")
        if found is not None:
            return _Blocker(found.record, by_reference=True, replayable=found.replayable)
    store.clear_expired(operation, now)
    return None


def _finish(operation: Operation, outcome: _Outcome, seen: Watch) -> HttpResponseBase:
    if isinstance(outcome, HttpResponseBase):
        return outcome
    return _answer(operation, outcome, seen)


def _answer(operation: Operation, blocker: _Blocker, seen: Watch) -> HttpResponseBase:
    record = blocker.record
    if blocker.replayable and record.fingerprint == operation.fingerprint:
        response_replayed.send(sender=IdempotencyRecord, operation=operation, record=record)
        with seen.span("replay"):
            replay = stored_response(record).replay()
        _count(operation, seen, "replayed")
        return replay
    error: IdempotencyError
    if blocker.by_reference:
        _send_conflict(operation, record, "reference")
        _count(operation, seen, "reference_conflict")
        # Fail safe: a reference outlives its stored response; then it refuses, whatever
        # the content, rather than let a second request perform the operation again.
        reference = operation.reference or ""
        error = ReferenceConflict(reference) if blocker.replayable else ReferenceHeld(reference)
    else:
        _send_conflict(operation, record, "mismatch")
        _count(operation, seen, "mismatch")
        error = KeyMismatch()
    raise error


def stored_response(record: IdempotencyRecord) -> StoredResponse:
    status = record.response_status
    if status is None:  # only a completed record is replayed, and completing stores a status
        raise ValueError(f"Record {record.pk} has no stored response to replay.")
    return StoredResponse(
        status=status,
        headers=[(str(name), str(value)) for name, value in record.response_headers],
        body=bytes(record.response_body),
    )


def _send_conflict(operation: Operation, record: IdempotencyRecord | None, kind: str) -> None:
    request_conflicted.send(sender=IdempotencyRecord, operation=operation, record=record, kind=kind)
