"""The record store's SQL: claim a key, find and count a stored record, save the outcome.

The claim is one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: it never raises on a
duplicate, and a copy that collides with an uncommitted claim waits on the database's own
unique-index lock until the original commits or rolls back (bounded by ``lock_timeout``).
PostgreSQL and SQLite both speak this dialect; other vendors are refused by a system check.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model

from .models import IdempotencyRecord
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


def _column(connection: BaseDatabaseWrapper, name: str) -> str:
    return str(connection.ops.quote_name(_meta().get_field(name).column))


def _table(connection: BaseDatabaseWrapper) -> str:
    return str(connection.ops.quote_name(_meta().db_table))


def _prep(connection: BaseDatabaseWrapper, name: str, value: Any) -> Any:
    return _meta().get_field(name).get_db_prep_save(value, connection)


def _returning(connection: BaseDatabaseWrapper) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in _meta().concrete_fields)


def touch(
    database: str,
    *,
    scope: str,
    fingerprint: str,
    now: datetime,
    key: str | None = None,
    reference: str | None = None,
) -> IdempotencyRecord | None:
    """Find the live completed record for a key (or a held reference) and count this visit.

    One statement: the replay or conflict counter moves by whether the fingerprint matches,
    and the record comes back, so a replay costs a single indexed round trip.
    """
    connection = connections[database]

    def col(name: str) -> str:
        return _column(connection, name)

    lookup_field, lookup_value = ("key", key) if key is not None else ("reference", reference)
    # Outside a transaction the statement commits by itself; what it writes is bookkeeping
    # (counters, last seen), so on PostgreSQL that commit need not wait for the WAL flush.
    relaxed = commits_alone(connection)
    sql = (
        (_RELAXED_COMMIT if relaxed else "") + f"UPDATE {_table(connection)} SET "
        f"{col('replay_count')} = {col('replay_count')} "
        f"+ CASE WHEN {col('fingerprint')} = %s THEN 1 ELSE 0 END, "
        f"{col('conflict_count')} = {col('conflict_count')} "
        f"+ CASE WHEN {col('fingerprint')} = %s THEN 0 ELSE 1 END, "
        f"{col('last_seen_at')} = %s "
        + ("FROM relaxed " if relaxed else "")
        + f"WHERE {col('scope')} = %s AND {col(lookup_field)} = %s "
        f"AND {col('expires_at')} > %s AND {col('state')} = %s "
        f"RETURNING {_returning(connection)}"
    )
    params = [
        fingerprint,
        fingerprint,
        _prep(connection, "last_seen_at", now),
        scope,
        lookup_value,
        _prep(connection, "expires_at", now),
        IdempotencyRecord.State.COMPLETED,
    ]
    with _bounded_wait():
        rows = list(IdempotencyRecord.objects.using(database).raw(sql, params))
    return rows[0] if rows else None


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
) -> int | None:
    """Insert the in-flight record; its id, or ``None`` when a committed record is in the way.

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
    columns = ", ".join(_column(connection, name) for name in values)
    params = [_prep(connection, name, value) for name, value in values.items()]
    returning = _column(connection, "id")
    if connection.vendor == "postgresql":
        sql, params = _bounded_claim_sql(connection, values, columns, returning, params)
        params.insert(0, f"{max(1, round(lock_timeout * 1000))}ms")
    else:
        # SQLite waits for its busy timeout (the connection's "timeout" option) instead.
        placeholders = ", ".join(["%s"] * len(values))
        sql = (
            f"INSERT INTO {_table(connection)} ({columns}) VALUES ({placeholders}) "
            f"ON CONFLICT DO NOTHING RETURNING {returning}"
        )
    with connection.cursor() as cursor, _bounded_wait():
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def _bounded_claim_sql(
    connection: BaseDatabaseWrapper,
    values: dict[str, Any],
    columns: str,
    returning: str,
    params: list[Any],
) -> tuple[str, list[Any]]:
    """The PostgreSQL claim in one round trip, its wait bounded by a local ``lock_timeout``.

    ``limits`` saves the session's setting and applies ours; the insert reads from ``limits``, so
    it starts after that; the outer select puts the saved setting back once the insert has
    returned, so the view runs under the project's own ``lock_timeout``.
    """
    casts = _typed_placeholders(connection, IdempotencyRecord, values)
    sql = (
        "WITH limits AS MATERIALIZED ("
        " SELECT saved.previous, set_config('lock_timeout', %s, true) AS applied"
        " FROM (SELECT current_setting('lock_timeout') AS previous OFFSET 0) AS saved"
        "), claimed AS ("
        f" INSERT INTO {_table(connection)} ({columns}) SELECT {casts} FROM limits"
        f" ON CONFLICT DO NOTHING RETURNING {returning}"
        ") SELECT (SELECT * FROM claimed),"
        " set_config('lock_timeout', (SELECT previous FROM limits), true)"
    )
    return sql, params


def _typed_placeholders(connection: BaseDatabaseWrapper, model: Any, names: Any) -> str:
    """``%s`` placeholders cast to their columns' types, for ``INSERT ... SELECT``."""
    return ", ".join(
        f"CAST(%s AS {model._meta.get_field(name).db_type(connection)})" for name in names
    )


_RELAXED_COMMIT = (
    "WITH relaxed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "
)


def commits_alone(connection: BaseDatabaseWrapper) -> bool:
    """Whether a statement here is its own transaction on PostgreSQL, so it may relax its commit."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def insert_bookkeeping(database: str, model: type[Model], values: dict[str, Any]) -> None:
    """Insert a log row; outside a transaction on PostgreSQL, without waiting for the WAL flush.

    For rows that are telemetry, not results (the event log): a crash may lose the last few.
    """
    connection = connections[database]
    if not commits_alone(connection):
        model._default_manager.using(database).create(**values)
        return
    fields: dict[str, Any] = {name: model._meta.get_field(name) for name in values}
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields.values())
    params = [fields[name].get_db_prep_save(value, connection) for name, value in values.items()]
    table = connection.ops.quote_name(model._meta.db_table)
    sql = (
        f"{_RELAXED_COMMIT}INSERT INTO {table} ({columns}) "
        f"SELECT {_typed_placeholders(connection, model, values)} FROM relaxed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _gave_up_waiting(exc: OperationalError) -> bool:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _WAIT_GAVE_UP:
        return True
    return "database is locked" in str(exc)  # SQLite's busy timeout


def delete_expired(
    database: str, *, scope: str, key: str, reference: str | None, now: datetime
) -> int:
    """Remove expired records that stand in the way of a claim: expired counts as absent."""
    records = IdempotencyRecord.objects.using(database).filter(scope=scope).expired(now)
    deleted: int = records.filter(key=key).delete()[0]
    if reference is not None:
        deleted += records.filter(reference=reference).delete()[0]
    return deleted


def complete(
    database: str,
    *,
    record_id: int,
    response: StoredResponse,
    keep_reference: bool,
    now: datetime,
    ttl: timedelta,
) -> None:
    """Store the outcome in the claiming transaction; only a success keeps the reference."""
    updates: dict[str, Any] = {
        "state": IdempotencyRecord.State.COMPLETED,
        "response_status": response.status,
        "response_headers": [list(pair) for pair in response.headers],
        "response_body": response.body,
        "completed_at": now,
        "expires_at": now + ttl,
    }
    if not keep_reference:
        updates["reference"] = None
    IdempotencyRecord.objects.using(database).filter(pk=record_id).update(**updates)
