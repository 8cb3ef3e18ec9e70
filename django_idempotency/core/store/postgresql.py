"""The store's statements on PostgreSQL, the production database.

Each statement is written out whole below. The tables' names and the record's column list come
from the models' ``_meta``, formatted in once when this module is imported (``names.py``); the
other columns are spelled as the migrations create them. A value sent into an
``INSERT ... SELECT`` is cast to its column's type: there PostgreSQL cannot infer the type from
the column.

Time is the database's: ``statement_timestamp()`` (when the statement started) dates the
records and judges their expiry, so app servers whose clocks disagree still agree on it.

Two tricks that ``docs/benchmarks.md`` measured as paying (``benchmarks/README.md``, "What the
hot path tried") are kept, each at its statement: the replay's bookkeeping commits without
waiting for the WAL flush (``relaxed``), and the event row of a lookup is written by the
lookup's own statement (``logged``), so a replay or refusal costs a single statement after
its claim.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.functions import Now

from .names import statement
from .parameters import event_parameters, outcome_parameters

if TYPE_CHECKING:
    from ..operation import Operation

#: The lookup writes the visit's event row itself (``logged`` below).
LOGS_IN_LOOKUP = True
#: The expired records in a claim's way are cleared by their key and reference filters.
CLEARS_BY_PRIMARY_KEY = False


# The claim in one round trip, its wait for a concurrent holder of the key or reference
# bounded by a lock_timeout of its own: ``limits`` saves the session's lock_timeout and sets
# ours; the insert reads from ``limits``, so it starts after that; the outer select puts the
# saved value back once the insert has returned, so the view runs under the project's own.
# (psycopg sends BEGIN alone, so a SET LOCAL cannot share its round trip: docs/benchmarks.md.)
CLAIM = statement("""
WITH limits AS MATERIALIZED (
    SELECT saved.previous, set_config('lock_timeout', %(lock_timeout)s, true) AS applied
    FROM (SELECT current_setting('lock_timeout') AS previous OFFSET 0) AS saved
), claimed AS (
    INSERT INTO {records} (
        "scope", "key", "fingerprint", "reference", "requested_reference", "state",
        "request_method", "request_path", "response_headers", "response_body",
        "created_at", "expires_at", "replay_count", "conflict_count"
    )
    SELECT
        CAST(%(scope)s AS varchar(255)), CAST(%(key)s AS varchar(255)),
        CAST(%(fingerprint)s AS varchar(64)), CAST(%(reference)s AS varchar(255)),
        CAST(%(reference)s AS varchar(255)), 'in_flight',
        CAST(%(method)s AS varchar(16)), CAST(%(path)s AS text), '[]'::jsonb, ''::bytea,
        statement_timestamp(), statement_timestamp() + CAST(%(ttl)s AS interval), 0, 0
    FROM limits
    ON CONFLICT DO NOTHING
    RETURNING "id", "created_at"
)
SELECT
    (SELECT "id" FROM claimed),
    (SELECT "created_at" FROM claimed),
    set_config('lock_timeout', (SELECT previous FROM limits), true)
""")

# The committed record a claim met by its key (live and completed, so replayable): count the
# visit as a replay (same fingerprint) or a conflict, and log it as ``replayed`` or
# ``mismatch`` while the record has had at most event_limit visits (NULL: the log is off).
#
# ``relaxed`` (measured: a replay then has no durable commit, docs/benchmarks.md): when the
# claim's transaction is its own (nothing else shares it, and its claim inserted nothing), or
# the statement runs alone, its commit carries only this bookkeeping, so it need not wait for
# the WAL flush. Otherwise synchronous_commit is set to what it already is.
FIND_BY_KEY = statement("""
WITH relaxed AS MATERIALIZED (
    SELECT set_config(
        'synchronous_commit',
        CASE WHEN %(relaxed)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    )
), found AS (
    UPDATE {records} SET
        "replay_count" = "replay_count"
            + CASE WHEN "fingerprint" = %(fingerprint)s THEN 1 ELSE 0 END,
        "conflict_count" = "conflict_count"
            + CASE WHEN "fingerprint" = %(fingerprint)s THEN 0 ELSE 1 END,
        "last_seen_at" = statement_timestamp()
    FROM relaxed
    WHERE "scope" = %(scope)s AND "key" = %(key)s
        AND "state" = 'completed' AND "expires_at" > statement_timestamp()
    RETURNING {record_columns},
        "fingerprint" = %(fingerprint)s AS replayed,
        true AS replayable
), logged AS (
    INSERT INTO {events} (
        "at", "kind", "scope", "key", "reference", "fingerprint", "record_id", "expires_at"
    )
    SELECT
        CAST(%(at)s AS timestamp with time zone),
        CASE WHEN found.replayed THEN 'replayed' ELSE 'mismatch' END,
        CAST(%(scope)s AS varchar(255)), CAST(%(key)s AS varchar(255)),
        CAST(%(reference)s AS varchar(255)), CAST(%(fingerprint)s AS varchar(64)),
        found."id", found."expires_at"
    FROM found
    WHERE found."replay_count" + found."conflict_count" <= CAST(%(event_limit)s AS integer)
)
SELECT {record_columns}, replayed, replayable FROM found
""")

# The committed record a claim met by its reference: any record still holding it, also one
# whose response expired or was purged (state ``held``), which can no longer replay. Counted
# and logged as FIND_BY_KEY (the refusal is ``reference``), ``relaxed`` likewise.
FIND_BY_REFERENCE = statement("""
WITH relaxed AS MATERIALIZED (
    SELECT set_config(
        'synchronous_commit',
        CASE WHEN %(relaxed)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    )
), found AS (
    UPDATE {records} SET
        "replay_count" = "replay_count" + CASE
            WHEN "fingerprint" = %(fingerprint)s
                AND "state" = 'completed' AND "expires_at" > statement_timestamp()
            THEN 1 ELSE 0 END,
        "conflict_count" = "conflict_count" + CASE
            WHEN "fingerprint" = %(fingerprint)s
                AND "state" = 'completed' AND "expires_at" > statement_timestamp()
            THEN 0 ELSE 1 END,
        "last_seen_at" = statement_timestamp()
    FROM relaxed
    WHERE "scope" = %(scope)s AND "reference" = %(reference)s
        AND "state" IN ('completed', 'held')
        AND ("reference_expires_at" IS NULL
            OR "reference_expires_at" > statement_timestamp())
    RETURNING {record_columns},
        "fingerprint" = %(fingerprint)s
            AND "state" = 'completed' AND "expires_at" > statement_timestamp() AS replayed,
        "state" = 'completed' AND "expires_at" > statement_timestamp() AS replayable
), logged AS (
    INSERT INTO {events} (
        "at", "kind", "scope", "key", "reference", "fingerprint", "record_id", "expires_at"
    )
    SELECT
        CAST(%(at)s AS timestamp with time zone),
        CASE WHEN found.replayed THEN 'replayed' ELSE 'reference' END,
        CAST(%(scope)s AS varchar(255)), CAST(%(key)s AS varchar(255)),
        CAST(%(reference)s AS varchar(255)), CAST(%(fingerprint)s AS varchar(64)),
        found."id", found."expires_at"
    FROM found
    WHERE found."replay_count" + found."conflict_count" <= CAST(%(event_limit)s AS integer)
)
SELECT {record_columns}, replayed, replayable FROM found
""")

# The outcome, dated by the database's clock. A NULL hold (no IDEMPOTENCY_REFERENCE_TTL) holds
# the reference for as long as the row exists; a reference not kept is released.
COMPLETE = statement("""
UPDATE {records} SET
    "state" = 'completed',
    "response_status" = %(status)s,
    "response_headers" = %(headers)s,
    "response_body" = %(body)s,
    "completed_at" = statement_timestamp(),
    "expires_at" = statement_timestamp() + CAST(%(ttl)s AS interval),
    "reference_expires_at" = statement_timestamp() + CAST(%(hold)s AS interval),
    "reference" = CASE WHEN %(keep_reference)s THEN "reference" END
WHERE "id" = %(record_id)s
""")

# One event row; ``relaxed`` as in FIND_BY_KEY: an event is telemetry, not a result.
LOG_EVENT = statement("""
WITH relaxed AS MATERIALIZED (
    SELECT set_config(
        'synchronous_commit',
        CASE WHEN %(relaxed)s THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    )
)
INSERT INTO {events} (
    "at", "kind", "scope", "key", "reference", "fingerprint", "record_id", "expires_at"
)
SELECT
    CAST(%(at)s AS timestamp with time zone), CAST(%(kind)s AS varchar(16)),
    CAST(%(scope)s AS varchar(255)), CAST(%(key)s AS varchar(255)),
    CAST(%(reference)s AS varchar(255)), CAST(%(fingerprint)s AS varchar(64)),
    CAST(%(record_id)s AS bigint), CAST(%(expires_at)s AS timestamp with time zone)
FROM relaxed
""")


def claim(
    connection: BaseDatabaseWrapper, operation: Operation, now: datetime
) -> tuple[int, datetime] | None:
    """The claimed record's id and creation time by the database's clock, or ``None``."""
    params = {
        "lock_timeout": f"{max(1, round(operation.lock_timeout * 1000))}ms",
        "scope": operation.scope,
        "key": operation.key,
        "fingerprint": operation.fingerprint,
        "reference": operation.reference,
        "method": operation.method,
        "path": operation.path,
        "ttl": operation.ttl,
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, params)
        row = cursor.fetchone()
    if not row or row[0] is None:
        return None
    return row[0], row[1]


def find_count_and_log(
    connection: BaseDatabaseWrapper,
    operation: Operation,
    *,
    by: str,
    now: datetime,
    event_limit: int | None,
) -> tuple[Any, ...] | None:
    """Every column of the record found, then ``replayed`` and ``replayable``; or ``None``."""
    params = {
        "relaxed": _commits_bookkeeping_only(connection),
        "scope": operation.scope,
        "key": operation.key,
        "reference": operation.reference,
        "fingerprint": operation.fingerprint,
        "at": now,
        "event_limit": event_limit,
    }
    with connection.cursor() as cursor:
        cursor.execute(FIND_BY_KEY if by == "key" else FIND_BY_REFERENCE, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


def complete(
    connection: BaseDatabaseWrapper,
    operation: Operation,
    *,
    record_id: int,
    status: int,
    headers: Any,
    body: Any,
    keep_reference: bool,
    now: datetime,
    ttl: timedelta,
    hold: timedelta | None,
) -> None:
    params = outcome_parameters(
        record_id=record_id,
        status=status,
        headers=headers,
        body=body,
        keep_reference=keep_reference,
        ttl=ttl,
        hold=hold,
    )
    with connection.cursor() as cursor:
        cursor.execute(COMPLETE, params)


def log_event(
    connection: BaseDatabaseWrapper,
    operation: Operation,
    *,
    kind: str,
    at: datetime,
    record_id: int | None,
    expires_at: datetime,
) -> None:
    params = event_parameters(
        operation, kind=kind, record_id=record_id, at=at, expires_at=expires_at
    )
    # Outside a transaction the event need not wait for its WAL flush (``LOG_EVENT``).
    params["relaxed"] = not connection.in_atomic_block
    with connection.cursor() as cursor:
        cursor.execute(LOG_EVENT, params)


def clock(now: datetime) -> Any:
    """What expiry is judged by: the database's clock, not the app server's ``now``."""
    return Now()


def transaction_failed(connection: BaseDatabaseWrapper) -> bool:
    """Whether a statement failed in the open transaction, which then refuses every statement
    but a rollback; read from the driver (libpq's PQTRANS_INERROR, psycopg 2 and 3), no round
    trip."""
    driver = connection.connection
    return driver is not None and driver.info.transaction_status == _IN_ERROR


_IN_ERROR = 3


def _commits_bookkeeping_only(connection: BaseDatabaseWrapper) -> bool:
    """Whether the lookup's commit carries nothing but its own bookkeeping: it runs alone, or
    in the claim's transaction that no outer block shares (the claim inserted nothing)."""
    return not connection.in_atomic_block or len(connection.atomic_blocks) == 1
