"""The store's statements on SQLite, for development (``check --deploy`` warns about it).

Each statement is written out whole below; the tables' names and the record's column list
come from the models' ``_meta``, formatted in once when this module is imported
(``names.py``). Time is the app server's ``now``, sent with each statement. SQLite serialises
writers, so a copy of a request waits for its busy timeout (the connection's ``timeout``
option), not a lock_timeout; the event of a lookup is written by a statement of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper

from ...models import IdempotencyRecord
from .names import statement
from .parameters import event_parameters, outcome_parameters

if TYPE_CHECKING:
    from ..operation import Operation

#: The lookup does not write the visit's event: the store logs it with ``LOG_EVENT``.
LOGS_IN_LOOKUP = False
#: The expired records in a claim's way are cleared by their key and reference filters.
CLEARS_BY_PRIMARY_KEY = False


CLAIM = statement("""
INSERT INTO {records} (
    "scope", "key", "fingerprint", "reference", "requested_reference", "state",
    "request_method", "request_path", "response_headers", "response_body",
    "created_at", "expires_at", "replay_count", "conflict_count"
)
VALUES (
    %(scope)s, %(key)s, %(fingerprint)s, %(reference)s, %(reference)s, 'in_flight',
    %(method)s, %(path)s, '[]', X'',
    %(now)s, %(expires_at)s, 0, 0
)
ON CONFLICT DO NOTHING
RETURNING "id"
""")

# The committed record a claim met by its key (live and completed, so replayable): count the
# visit as a replay (same fingerprint) or a conflict.
FIND_BY_KEY = statement("""
UPDATE {records} SET
    "replay_count" = "replay_count"
        + CASE WHEN "fingerprint" = %(fingerprint)s THEN 1 ELSE 0 END,
    "conflict_count" = "conflict_count"
        + CASE WHEN "fingerprint" = %(fingerprint)s THEN 0 ELSE 1 END,
    "last_seen_at" = %(now)s
WHERE "scope" = %(scope)s AND "key" = %(key)s
    AND "state" = 'completed' AND "expires_at" > %(now)s
RETURNING {record_columns},
    "fingerprint" = %(fingerprint)s AS replayed,
    1 AS replayable
""")

# The committed record a claim met by its reference: any record still holding it, also one
# whose response expired or was purged (state ``held``), which can no longer replay.
FIND_BY_REFERENCE = statement("""
UPDATE {records} SET
    "replay_count" = "replay_count" + CASE
        WHEN "fingerprint" = %(fingerprint)s
            AND "state" = 'completed' AND "expires_at" > %(now)s
        THEN 1 ELSE 0 END,
    "conflict_count" = "conflict_count" + CASE
        WHEN "fingerprint" = %(fingerprint)s
            AND "state" = 'completed' AND "expires_at" > %(now)s
        THEN 0 ELSE 1 END,
    "last_seen_at" = %(now)s
WHERE "scope" = %(scope)s AND "reference" = %(reference)s
    AND "state" IN ('completed', 'held')
    AND ("reference_expires_at" IS NULL OR "reference_expires_at" > %(now)s)
RETURNING {record_columns},
    "fingerprint" = %(fingerprint)s
        AND "state" = 'completed' AND "expires_at" > %(now)s AS replayed,
    "state" = 'completed' AND "expires_at" > %(now)s AS replayable
""")

COMPLETE = statement("""
UPDATE {records} SET
    "state" = 'completed',
    "response_status" = %(status)s,
    "response_headers" = %(headers)s,
    "response_body" = %(body)s,
    "completed_at" = %(now)s,
    "expires_at" = %(expires_at)s,
    "reference_expires_at" = %(reference_expires_at)s,
    "reference" = CASE WHEN %(keep_reference)s THEN "reference" END
WHERE "id" = %(record_id)s
""")

LOG_EVENT = statement("""
INSERT INTO {events} (
    "at", "kind", "scope", "key", "reference", "fingerprint", "record_id", "expires_at"
)
VALUES (
    %(at)s, %(kind)s, %(scope)s, %(key)s, %(reference)s, %(fingerprint)s,
    %(record_id)s, %(expires_at)s
)
""")


def claim(
    connection: BaseDatabaseWrapper, operation: Operation, now: datetime
) -> tuple[int, datetime] | None:
    """The claimed record's id and its creation time (``now``, as sent), or ``None``."""
    params = {
        "scope": operation.scope,
        "key": operation.key,
        "fingerprint": operation.fingerprint,
        "reference": operation.reference,
        "method": operation.method,
        "path": operation.path,
        "now": _datetime(connection, now),
        "expires_at": _datetime(connection, now + operation.ttl),
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM, params)
        row = cursor.fetchone()
    if not row or row[0] is None:
        return None
    return row[0], now


def find_count_and_log(
    connection: BaseDatabaseWrapper,
    operation: Operation,
    *,
    by: str,
    now: datetime,
    event_limit: int | None,
) -> tuple[Any, ...] | None:
    """Every column of the record found, then ``replayed`` and ``replayable``; or ``None``.
    Logs nothing: ``LOGS_IN_LOOKUP`` is false."""
    params = {
        "scope": operation.scope,
        "key": operation.key,
        "reference": operation.reference,
        "fingerprint": operation.fingerprint,
        "now": _datetime(connection, now),
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
        now=_datetime(connection, now),
        expires_at=_datetime(connection, now + ttl),
        reference_expires_at=None if hold is None else _datetime(connection, now + hold),
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
        operation,
        kind=kind,
        record_id=record_id,
        at=_datetime(connection, at),
        expires_at=_datetime(connection, expires_at),
    )
    with connection.cursor() as cursor:
        cursor.execute(LOG_EVENT, params)


def transaction_failed(connection: BaseDatabaseWrapper) -> bool:
    """A failed statement leaves the transaction usable here (it undoes that statement only)."""
    return False


def clock(now: datetime) -> Any:
    """What expiry is judged by: the app server's ``now``."""
    return now


def _datetime(connection: BaseDatabaseWrapper, value: datetime) -> Any:
    """A datetime as a DateTimeField stores it here (UTC text under ``USE_TZ``)."""
    field: Any = IdempotencyRecord._meta.get_field("expires_at")
    return field.get_db_prep_save(value, connection)
