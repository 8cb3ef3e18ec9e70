"""The record store's SQL: claim a key, find and count a stored record, save the outcome.

The claim is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: it never raises on a
duplicate, and a copy that collides with an uncommitted claim waits on the database's own
unique-index lock until the original commits or rolls back (bounded by ``lock_timeout``).
PostgreSQL and SQLite both speak this dialect; other vendors are refused by a system check.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import OperationalError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Q
from django.db.models.functions import Now

from ..models import IdempotencyEvent, IdempotencyRecord
from .responses import StoredResponse

SUPPORTED_VENDORS = frozenset({"postgresql", "sqlite"})

# SQLSTATEs of "gave up waiting": lock_timeout, deadlock, statement_timeout.
_WAIT_GAVE_UP = frozenset({"55P03", "40P01", "57014"})


class WaitExpired(Exception):
    """Waiting for a concurrent request holding the same key or reference took too long."""


@contextmanager
def _bounded_wait() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        if _gave_up_waiting(exc):
            raise WaitExpired from exc
        raise


def _meta() -> Any:
    return IdempotencyRecord._meta


# Statements by (alias, vendor, name, variant): built once, since table names, quoting and
# column types never change while a process runs, and building them costs more than sending them.
_statements: dict[tuple[Hashable, ...], str] = {}


def _statement(
    connection: BaseDatabaseWrapper, name: str, variant: Hashable, build: Callable[[], str]
) -> str:
    cache_key = (connection.alias, connection.vendor, name, variant)
    sql = _statements.get(cache_key)
    if sql is None:
        sql = _statements[cache_key] = build()
    return sql


def _quoted(connection: BaseDatabaseWrapper, model: Any, name: str) -> str:
    return str(connection.ops.quote_name(model._meta.get_field(name).column))


def _column(connection: BaseDatabaseWrapper, name: str) -> str:
    return _quoted(connection, IdempotencyRecord, name)


def _table(connection: BaseDatabaseWrapper, model: Any = IdempotencyRecord) -> str:
    return str(connection.ops.quote_name(model._meta.db_table))


def _prep(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    field = _meta().get_field(name)
    if value is None or (type(value) in _PLAIN_VALUES and isinstance(field, _PLAIN_FIELDS)):
        return value  # what the field's own preparation would return, minus its cost
    return field.get_db_prep_save(value, connection)


def _sent(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    """A value as sent; an interval (added to the database's clock) and its marker as they are."""
    if value is _DATABASE_NOW or isinstance(value, timedelta):
        return value
    return _prep(connection, name, value)


_PLAIN_VALUES = frozenset({str, int})
_PLAIN_FIELDS = (models.CharField, models.TextField, models.IntegerField)


def _cast(
    connection: BaseDatabaseWrapper, model: Any, name: str, *, placeholder: str = "%s"
) -> str:
    """A placeholder cast to its column's type, for ``INSERT ... SELECT``."""
    return f"CAST({placeholder} AS {model._meta.get_field(name).db_type(connection)})"


def _typed_placeholders(connection: BaseDatabaseWrapper, model: Any, names: Any) -> str:
    return ", ".join(_cast(connection, model, name) for name in names)


@dataclass(frozen=True)
class Visitor:
    """The request that looks a record up, as the event log records its visit.

    Its event is ``replayed`` when its fingerprint matches the record's, else ``refusal``
    (``mismatch`` for a key lookup, ``reference`` for a reference lookup). It is logged only
    while the record has had at most ``limit`` visits (its counters, this one included).
    """

    key: str
    reference: str | None
    refusal: str
    limit: int


_REPLAYED = "replayed"
_EVENT_COLUMNS = ("at", "kind", "scope", "key", "reference", "fingerprint", "record", "expires_at")


def touch(
    database: str,
    *,
    scope: str,
    fingerprint: str,
    now: datetime,
    key: str | None = None,
    reference: str | None = None,
    log_as: Visitor | None = None,
    after_empty_claim: bool = False,
) -> tuple[IdempotencyRecord, bool] | None:
    """Find the committed record for a key (or a held reference) and count this visit.

    Returns the record and whether it can be replayed. A key finds only a live completed
    record; a reference finds any record still holding it, also one whose response expired or
    was purged (it cannot be replayed, but it still holds the reference).

    One statement: the replay or conflict counter moves by whether the visit is a replay, and
    the record comes back, so a replay costs a single indexed round trip. With ``log_as`` the
    visit is also written to the event log; on PostgreSQL by the same statement. On PostgreSQL
    expiry is judged by the database's clock, not the app server's (``now`` is ignored there).
    ``after_empty_claim``: called in the claim's transaction after the claim inserted nothing.
    """
    connection = connections[database]
    lookup = "key" if key is not None else "reference"
    # Outside a transaction the statement commits by itself; what it writes is bookkeeping
    # (counters, last seen, the event), so on PostgreSQL that commit need not wait for the
    # WAL flush. The same holds for the claim's own transaction when the claim inserted
    # nothing and no outer block shares it: its commit then carries only this bookkeeping.
    relaxed = commits_alone(connection) or (
        after_empty_claim and connection.vendor == "postgresql" and _owns_transaction(connection)
    )
    folds_event = log_as is not None and connection.vendor == "postgresql"
    sql = _statement(
        connection,
        "touch",
        (lookup, relaxed, folds_event),
        partial(_touch_sql, connection, lookup, relaxed=relaxed, folds_event=folds_event),
    )
    params: dict[str, Any] = {
        "fingerprint": fingerprint,
        "scope": scope,
        "value": key if key is not None else reference,
    }
    if not _judges_time(connection):
        params["now"] = _prep(connection, "expires_at", now)
    if folds_event and log_as is not None:
        params.update(
            at=_event_prep(connection, "at", now),
            kind=log_as.refusal,
            key=log_as.key,
            reference=log_as.reference,
            event_limit=log_as.limit,
        )
    with connection.cursor() as cursor, _bounded_wait():
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    record = _record_from_row(connection, row[:-1])
    replayable = bool(row[-1])
    if log_as is not None and not folds_event and _visits(record) <= log_as.limit:
        replayed = replayable and record.fingerprint == fingerprint
        log_event(
            database,
            at=now,
            kind=_REPLAYED if replayed else log_as.refusal,
            scope=scope,
            key=log_as.key,
            reference=log_as.reference,
            fingerprint=fingerprint,
            record_id=record.pk,
            expires_at=record.expires_at,
        )
    return record, replayable


def _visits(record: IdempotencyRecord) -> int:
    """Visits after the first request, this one included (the counters as just moved)."""
    return record.replay_count + record.conflict_count


def _owns_transaction(connection: BaseDatabaseWrapper) -> bool:
    """Whether the innermost ``atomic`` block is also the outermost: nothing else shares it."""
    return len(connection.atomic_blocks) == 1


def _judges_time(connection: BaseDatabaseWrapper) -> bool:
    """Whether statements here read the database's clock rather than the app server's."""
    return connection.vendor == "postgresql"


def _clock(connection: BaseDatabaseWrapper) -> str:
    return "statement_timestamp()" if _judges_time(connection) else "%(now)s"


def _touch_sql(
    connection: BaseDatabaseWrapper, lookup: str, *, relaxed: bool, folds_event: bool
) -> str:
    def col(name: str) -> str:
        return _column(connection, name)

    now = _clock(connection)
    State = IdempotencyRecord.State
    replayable = f"({col('state')} = '{State.COMPLETED}' AND {col('expires_at')} > {now})"
    if lookup == "key":
        found = replayable
    else:
        # A success holds its reference past its response's expiry (IDEMPOTENCY_REFERENCE_TTL).
        held_until = col("reference_expires_at")
        found = (
            f"{col('state')} IN ('{State.COMPLETED}', '{State.HELD}') "
            f"AND ({held_until} IS NULL OR {held_until} > {now})"
        )
    replay = f"({col('fingerprint')} = %(fingerprint)s AND {replayable})"
    columns = ", ".join(connection.ops.quote_name(f.column) for f in _meta().concrete_fields)
    update = (
        f"UPDATE {_table(connection)} SET "
        f"{col('replay_count')} = {col('replay_count')} "
        f"+ CASE WHEN {replay} THEN 1 ELSE 0 END, "
        f"{col('conflict_count')} = {col('conflict_count')} "
        f"+ CASE WHEN {replay} THEN 0 ELSE 1 END, "
        f"{col('last_seen_at')} = {now} "
        + ("FROM relaxed " if relaxed else "")
        + f"WHERE {col('scope')} = %(scope)s AND {col(lookup)} = %(value)s AND {found} "
        f"RETURNING {columns}, {replay} AS replayed, {replayable} AS replayable"
    )
    if not relaxed and not folds_event:
        return update.replace(f", {replay} AS replayed", "")
    parts = [_RELAXED_CTE] if relaxed else []
    parts.append(f"touched AS ({update})")
    if folds_event:
        # The visit's event row, written by the same statement from the record it found.
        names = ", ".join(_quoted(connection, IdempotencyEvent, name) for name in _EVENT_COLUMNS)
        at, kind, scope, key, reference, fingerprint = (
            _cast(connection, IdempotencyEvent, name, placeholder=f"%({name})s")
            for name in _EVENT_COLUMNS[:6]
        )
        parts.append(
            f"logged AS (INSERT INTO {_table(connection, IdempotencyEvent)} ({names}) "
            f"SELECT {at}, CASE WHEN touched.replayed "
            f"THEN '{_REPLAYED}' ELSE {kind} END, {scope}, {key}, {reference}, {fingerprint}, "
            f"touched.{col('id')}, touched.{col('expires_at')} FROM touched "
            f"WHERE touched.{col('replay_count')} + touched.{col('conflict_count')} "
            "<= %(event_limit)s)"
        )
    return f"WITH {', '.join(parts)} SELECT {columns}, replayable FROM touched"


def _record_from_row(connection: BaseDatabaseWrapper, row: Sequence[Any]) -> IdempotencyRecord:
    """The record from a ``RETURNING`` row, through the fields' own database converters."""
    values = list(row)
    for index, field in enumerate(_meta().concrete_fields):
        if values[index] is None:
            continue
        column = field.cached_col
        for convert in connection.ops.get_db_converters(column) + field.get_db_converters(
            connection
        ):
            values[index] = convert(values[index], column, connection)
    names = [field.attname for field in _meta().concrete_fields]
    record: IdempotencyRecord = IdempotencyRecord.from_db(connection.alias, names, values)
    return record


def log_event(database: str, **values: Any) -> None:
    """One event row; outside a transaction on PostgreSQL, without waiting for the WAL flush.

    Events are telemetry, not results: a crash may lose the last few, never a stored response.
    """
    connection = connections[database]
    relaxed = commits_alone(connection)
    names = tuple(values)
    sql = _statement(
        connection, "event", (names, relaxed), partial(_event_sql, connection, names, relaxed)
    )
    params = [_event_prep(connection, name, value) for name, value in values.items()]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _event_sql(connection: BaseDatabaseWrapper, names: tuple[str, ...], relaxed: bool) -> str:
    columns = ", ".join(_quoted(connection, IdempotencyEvent, name) for name in names)
    insert = f"INSERT INTO {_table(connection, IdempotencyEvent)} ({columns}) "
    if not relaxed:
        return insert + f"VALUES ({', '.join(['%s'] * len(names))})"
    casts = _typed_placeholders(connection, IdempotencyEvent, names)
    return f"{_RELAXED_PREFIX}{insert}SELECT {casts} FROM relaxed"


def _event_prep(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    field: Any = IdempotencyEvent._meta.get_field(name)
    return field.get_db_prep_save(value, connection)


@dataclass(frozen=True)
class Claimed:
    """The in-flight record a claim inserted, and when by the store's clock."""

    id: int
    #: The record's ``created_at``: the database's clock on PostgreSQL, ``now`` on SQLite.
    at: datetime


def claim(
    database: str,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    reference: str | None,
    method: str,
    path: str,
    now: datetime,
    ttl: timedelta,
    lock_timeout: float,
) -> Claimed | None:
    """Insert the in-flight record; it, or ``None`` when a committed record is in the way.

    Must run inside the caller's transaction. Raises ``WaitExpired`` when a concurrent
    holder of the key or reference did not finish within ``lock_timeout`` seconds.
    """
    connection = connections[database]
    values: dict[str, Any] = {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "reference": reference,
        "requested_reference": reference,
        "state": IdempotencyRecord.State.IN_FLIGHT,
        "request_method": method,
        "request_path": path,
        "response_headers": [],
        "response_body": b"",
        "created_at": now,
        "expires_at": now + ttl,
        "replay_count": 0,
        "conflict_count": 0,
    }
    names = tuple(values)
    if connection.vendor == "postgresql":
        # The database's clock dates the claim: only the TTL travels.
        values["created_at"], values["expires_at"] = _DATABASE_NOW, ttl
    params = [_sent(connection, name, value) for name, value in values.items()]
    params = [value for value in params if value is not _DATABASE_NOW]
    if connection.vendor == "postgresql":
        sql = _statement(connection, "claim", names, partial(_bounded_claim_sql, connection, names))
        params.insert(0, f"{max(1, round(lock_timeout * 1000))}ms")
    else:
        # SQLite waits for its busy timeout (the connection's "timeout" option) instead.
        sql = _statement(connection, "claim", names, partial(_plain_claim_sql, connection, names))
    with connection.cursor() as cursor, _bounded_wait():
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if not row or row[0] is None:
        return None
    # SQLite dates the record by ``now``, as sent; PostgreSQL returns its own clock's reading.
    return Claimed(id=int(row[0]), at=row[1] if connection.vendor == "postgresql" else now)


def _plain_claim_sql(connection: BaseDatabaseWrapper, names: tuple[str, ...]) -> str:
    columns = ", ".join(_column(connection, name) for name in names)
    placeholders = ", ".join(["%s"] * len(names))
    return (
        f"INSERT INTO {_table(connection)} ({columns}) VALUES ({placeholders}) "
        f"ON CONFLICT DO NOTHING RETURNING {_column(connection, 'id')}"
    )


def _bounded_claim_sql(connection: BaseDatabaseWrapper, names: tuple[str, ...]) -> str:
    """The PostgreSQL claim in one round trip, its wait bounded by a local ``lock_timeout``.

    ``limits`` saves the session's setting and applies ours; the insert reads from ``limits``, so
    it starts after that; the outer select puts the saved setting back once the insert has
    returned, so the view runs under the project's own ``lock_timeout``.
    """
    columns = ", ".join(_column(connection, name) for name in names)
    record_id, created_at = _column(connection, "id"), _column(connection, "created_at")
    casts = ", ".join(
        _DATED.get(name) or _cast(connection, IdempotencyRecord, name) for name in names
    )
    return (
        "WITH limits AS MATERIALIZED ("
        " SELECT saved.previous, set_config('lock_timeout', %s, true) AS applied"
        " FROM (SELECT current_setting('lock_timeout') AS previous OFFSET 0) AS saved"
        "), claimed AS ("
        f" INSERT INTO {_table(connection)} ({columns}) SELECT {casts} FROM limits"
        f" ON CONFLICT DO NOTHING RETURNING {record_id}, {created_at}"
        f") SELECT (SELECT {record_id} FROM claimed), (SELECT {created_at} FROM claimed),"
        " set_config('lock_timeout', (SELECT previous FROM limits), true)"
    )


# Stands for "the database's clock" among values: no parameter is sent for it.
_DATABASE_NOW: Any = object()
# How the PostgreSQL claim and completion date a record: ``statement_timestamp()`` is when the
# statement started (the view may have run for a while since the transaction began).
_DATED = {
    "created_at": "statement_timestamp()",
    "completed_at": "statement_timestamp()",
    "expires_at": "statement_timestamp() + CAST(%s AS interval)",
    "reference_expires_at": "statement_timestamp() + CAST(%s AS interval)",
}

_RELAXED_CTE = "relaxed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))"
_RELAXED_PREFIX = f"WITH {_RELAXED_CTE} "


def commits_alone(connection: BaseDatabaseWrapper) -> bool:
    """Whether a statement here is its own transaction on PostgreSQL, so it may relax its commit."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _gave_up_waiting(exc: OperationalError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _WAIT_GAVE_UP:
        return True
    return "database is locked" in str(exc)  # SQLite's busy timeout


def clear_expired(
    database: str, *, scope: str, key: str, reference: str | None, now: datetime
) -> int:
    """Clear expired records in the way of a claim: expired counts as absent.

    A record past its TTL gives its key back; one that still holds its reference keeps it, as
    a compact row stripped of its response (state ``held``), so the reference keeps refusing.
    A reference past ``reference_expires_at`` is released with its row. On PostgreSQL expiry
    is judged by the database's clock. Returns the rows deleted or stripped.
    """
    now_sql: Any = Now() if _judges_time(connections[database]) else now
    records = IdempotencyRecord.objects.using(database).filter(scope=scope)
    State = IdempotencyRecord.State
    expired_key = records.filter(key=key, state=State.COMPLETED, expires_at__lte=now_sql)
    cleared = expired_key.filter(holds_reference(now_sql)).update(
        state=State.HELD, response_headers=[], response_body=b""
    )
    cleared += expired_key.delete()[0]
    if reference is not None:
        released = records.filter(
            reference=reference, expires_at__lte=now_sql, reference_expires_at__lte=now_sql
        )
        cleared += released.delete()[0]
    return int(cleared)


def holds_reference(now: Any) -> Q:
    """Records whose reference is still held at ``now`` (a datetime or the database's clock)."""
    return Q(reference__isnull=False) & (
        Q(reference_expires_at__isnull=True) | Q(reference_expires_at__gt=now)
    )


def complete(
    database: str,
    *,
    record_id: int,
    response: StoredResponse,
    keep_reference: bool,
    now: datetime,
    ttl: timedelta,
    reference_ttl: timedelta | None = None,
) -> None:
    """Store the outcome in the claiming transaction; only a success keeps the reference.

    The reference is held for ``reference_ttl`` (never shorter than ``ttl``), or for as long
    as the row exists when that is ``None``.
    """
    connection = connections[database]
    hold = None if reference_ttl is None else max(ttl, reference_ttl)
    updates: dict[str, Any] = {
        "state": IdempotencyRecord.State.COMPLETED,
        "response_status": response.status,
        "response_headers": [list(pair) for pair in response.headers],
        "response_body": response.body,
        "completed_at": now,
        "expires_at": now + ttl,
        "reference_expires_at": None if hold is None else now + hold,
    }
    if not keep_reference:
        updates["reference"] = None
    names = tuple(updates)
    if _judges_time(connection):
        updates["completed_at"], updates["expires_at"] = _DATABASE_NOW, ttl
        updates["reference_expires_at"] = hold
    sql = _statement(connection, "complete", names, partial(_complete_sql, connection, names))
    params = [_sent(connection, name, value) for name, value in updates.items()]
    params = [value for value in params if value is not _DATABASE_NOW]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, record_id])


def _complete_sql(connection: BaseDatabaseWrapper, names: tuple[str, ...]) -> str:
    dated = _DATED if _judges_time(connection) else {}
    assignments = ", ".join(
        f"{_column(connection, name)} = {dated.get(name, '%s')}" for name in names
    )
    return f"UPDATE {_table(connection)} SET {assignments} WHERE {_column(connection, 'id')} = %s"
