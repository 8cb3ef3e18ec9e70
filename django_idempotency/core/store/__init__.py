"""The record store: claim a key, find a committed record and count the visit, store the outcome.

Every function takes the ``Operation`` it works for and runs on ``operation.database``. The SQL
is in one module per dialect, each statement written out whole: ``postgresql`` and ``mysql``
(MariaDB and MySQL; production) and ``sqlite`` (development); this module picks the dialect by
the connection's vendor and turns what a statement returns into records. Other vendors are
refused by a system check.

The claim never raises on a duplicate (``ON CONFLICT DO NOTHING``; on MySQL the duplicate-key
error, caught precisely), and a copy that collides with an uncommitted claim waits on the
database's own unique-index lock until the original commits or rolls back (bounded by
``lock_timeout``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, Literal

from django.conf import settings
from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ...models import IdempotencyRecord
from ..operation import Operation
from ..responses import StoredResponse
from . import mysql, postgresql, sqlite

_DIALECTS: dict[str, ModuleType] = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}
SUPPORTED_VENDORS = frozenset(_DIALECTS)

# SQLSTATEs of "gave up waiting": lock_timeout, deadlock, statement_timeout.
_WAIT_GAVE_UP = frozenset({"55P03", "40P01", "57014"})
# MySQL and MariaDB error numbers of the same: lock wait timeout, deadlock (InnoDB rolled the
# whole transaction back; the atomic block's rollback then finds nothing to undo), and MariaDB's
# "record has changed since last read" (REPEATABLE READ with innodb_snapshot_isolation, 11.6+'s
# default: the caller's snapshot predates the original's commit, so only a new transaction can
# replay it).
_MYSQL_WAIT_GAVE_UP = frozenset({1205, 1213, 1020})

#: How a claim that met a committed record looks it up: by its key, or by the reference it holds.
Lookup = Literal["key", "reference"]


class WaitExpired(Exception):
    """Waiting for a concurrent request holding the same key or reference took too long."""


@dataclass(frozen=True)
class Claimed:
    """The in-flight record a claim inserted, and when by the store's clock."""

    id: int
    #: The record's ``created_at``: the database's clock (PostgreSQL, MySQL), ``now`` on SQLite.
    at: datetime


@dataclass(frozen=True)
class Found:
    """The committed record a lookup met (its counters as just moved), and if it can replay."""

    record: IdempotencyRecord
    replayable: bool


def claim(operation: Operation, now: datetime) -> Claimed | None:
    """Insert the operation's in-flight record; it, or ``None`` when a committed record (of its
    key or its reference) is in the way.

    Must run inside the caller's transaction. Raises ``WaitExpired`` when a concurrent holder
    of the key or reference did not finish within ``operation.lock_timeout`` seconds.
    """
    connection = connections[operation.database]
    with _bounded_wait():
        row = _dialect(connection).claim(connection, operation, now)
    return None if row is None else Claimed(id=int(row[0]), at=row[1])


def find_count_and_log(
    operation: Operation, *, by: Lookup, now: datetime, event_limit: int | None
) -> Found | None:
    """Find the committed record in the way of the operation's claim, count this visit on it,
    and log the visit in the event log.

    By ``key``: a live completed record of the key. By ``reference``: any record still holding
    the operation's reference, also one whose response expired or was purged (it cannot be
    replayed, but it still holds the reference). Counting moves the replay counter (same
    fingerprint, replayable) or the conflict counter, and the last-seen time. The visit is
    logged as ``replayed``, else ``mismatch`` (by key) or ``reference``, while the record has
    had at most ``event_limit`` visits; ``None``: the event log is off.

    Runs in the claim's transaction after the claim inserted nothing. On PostgreSQL one
    statement does it all and judges expiry by the database's clock (``now`` dates only the
    event); SQLite logs the visit with a second statement.
    """
    connection = connections[operation.database]
    dialect = _dialect(connection)
    with _bounded_wait():
        row = dialect.find_count_and_log(
            connection, operation, by=by, now=now, event_limit=event_limit
        )
    if row is None:
        return None
    *columns, replayed, replayable = row
    record = _record_from_row(connection, columns)
    visits = record.replay_count + record.conflict_count  # this one included
    if event_limit is not None and not dialect.LOGS_IN_LOOKUP and visits <= event_limit:
        refusal = "mismatch" if by == "key" else "reference"
        log_event(
            operation,
            kind="replayed" if replayed else refusal,
            at=now,
            record_id=record.pk,
            expires_at=record.expires_at,
        )
    return Found(record=record, replayable=bool(replayable))


def complete(
    operation: Operation,
    *,
    record_id: int,
    response: StoredResponse,
    keep_reference: bool,
    now: datetime,
    ttl: timedelta,
    reference_ttl: timedelta | None,
) -> None:
    """Store the outcome in the claiming transaction; only a success keeps the reference.

    The response is replayable for ``ttl`` (the operation's, or longer); the reference is held
    for ``reference_ttl`` (never shorter than ``ttl``), or for as long as the row exists when
    that is ``None``. On PostgreSQL and MySQL both are dated by the database's clock.
    """
    connection = connections[operation.database]
    hold = None if reference_ttl is None else max(ttl, reference_ttl)
    _dialect(connection).complete(
        connection,
        operation,
        record_id=record_id,
        status=response.status,
        headers=_prepared(connection, "response_headers", [list(p) for p in response.headers]),
        body=_prepared(connection, "response_body", response.body),
        keep_reference=keep_reference,
        now=now,
        ttl=ttl,
        hold=hold,
    )


def log_event(
    operation: Operation,
    *,
    kind: str,
    at: datetime,
    record_id: int | None,
    expires_at: datetime,
) -> None:
    """One event row about the operation. On PostgreSQL, when it is its own transaction, its
    commit does not wait for the WAL flush: events are telemetry, not results, so a crash may
    lose the last few, never a stored response."""
    connection = connections[operation.database]
    _dialect(connection).log_event(
        connection, operation, kind=kind, at=at, record_id=record_id, expires_at=expires_at
    )


def clear_expired(operation: Operation, now: datetime) -> int:
    """Clear the expired records in the way of the operation's claim (see
    ``IdempotencyRecordQuerySet.clear_expired``); on PostgreSQL and MySQL expiry is judged by the
    database's clock. Returns the rows deleted or stripped."""
    connection = connections[operation.database]
    dialect = _dialect(connection)
    records = IdempotencyRecord.objects.using(operation.database)
    # Bounded as the claim: it may wait for a copy clearing the same record.
    with _bounded_wait():
        cleared: int = records.clear_expired(
            scope=operation.scope,
            key=operation.key,
            reference=operation.reference,
            at=dialect.clock(now),
            by_primary_key=dialect.CLEARS_BY_PRIMARY_KEY,
        )
    return cleared


def _dialect(connection: BaseDatabaseWrapper) -> ModuleType:
    return _DIALECTS[connection.vendor]


@contextmanager
def _bounded_wait() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if _gave_up_waiting(exc):
            raise WaitExpired from exc
        raise


def _gave_up_waiting(exc: OperationalError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _WAIT_GAVE_UP:
        return True
    code = getattr(cause, "args", (None,))[:1]
    if code and isinstance(code[0], int) and code[0] in _MYSQL_WAIT_GAVE_UP:
        return True
    return "database is locked" in str(exc)  # SQLite's busy timeout


def transaction_failed(database: str) -> bool:
    """Whether the open transaction on ``database`` refuses statements after one that failed
    (PostgreSQL's aborted transaction), as the driver knows it: no round trip."""
    connection = connections[database]
    failed: bool = _dialect(connection).transaction_failed(connection)
    return failed


def _prepared(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    field: Any = IdempotencyRecord._meta.get_field(name)
    return field.get_db_prep_save(value, connection)


def _record_from_row(connection: BaseDatabaseWrapper, row: Sequence[Any]) -> IdempotencyRecord:
    """The record from a ``RETURNING`` row of every column in the model's order
    (``RECORD_COLUMNS`` of the dialects), through the fields' own database converters."""
    values = list(row)
    for index, column, converters in _converters(connection):
        value = values[index]
        if value is None:
            continue
        for convert in converters:
            value = convert(value, column, connection)
        values[index] = value
    record: IdempotencyRecord = IdempotencyRecord.from_db(connection.alias, _ATTNAMES, values)
    return record


_ATTNAMES = [field.attname for field in IdempotencyRecord._meta.concrete_fields]
# Per connection (and USE_TZ, which picks MySQL's and SQLite's datetime converters): the columns
# that have converters, and theirs. Asking every field for them on every lookup cost more than
# converting the row (docs/benchmarks.md, "Loading the record"). Kept on the connection itself:
# those converters are methods of its operations, so a cache outside it (a WeakKeyDictionary)
# would keep every thread's connection alive for good.
_CONVERTERS_ATTRIBUTE = "_idempotency_record_converters"


def _converters(connection: BaseDatabaseWrapper) -> list[tuple[int, Any, list[Any]]]:
    cache: dict[bool, list[tuple[int, Any, list[Any]]]] | None = getattr(
        connection, _CONVERTERS_ATTRIBUTE, None
    )
    if cache is None:
        cache = {}
        setattr(connection, _CONVERTERS_ATTRIBUTE, cache)
    use_tz = bool(settings.USE_TZ)
    known = cache.get(use_tz)
    if known is None:
        known = []
        for index, field in enumerate(IdempotencyRecord._meta.concrete_fields):
            column = field.cached_col
            converters = connection.ops.get_db_converters(column) + field.get_db_converters(
                connection
            )
            if converters:
                known.append((index, column, converters))
        cache[use_tz] = known
    return known
