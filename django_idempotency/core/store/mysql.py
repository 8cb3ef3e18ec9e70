"""The store's statements on MariaDB (10.6+) and MySQL (8.0+), InnoDB.

Each statement is written out whole below; the tables' names and the record's column list come
from the models' ``_meta`` (``names.py``, backtick-quoted). The SQL runs on both servers: no
``RETURNING`` (MySQL has none), no ``ON CONFLICT``. What differs is said where it does.

Time is the database's: ``UTC_TIMESTAMP(6)`` (fixed for the whole statement) dates the records
and judges their expiry. Django's MySQL backend stores naive datetimes in the connection's time
zone, which the system check E009 requires to be UTC, so the session's ``time_zone`` never
matters.

InnoDB has no partial unique index. Migration 0008 adds ``idempotency_live_key``, a stored
generated column that is the key unless the record is ``held`` and NULL then, with a unique
index on (scope, it); NULLs never collide, so it is PostgreSQL's partial index ``unique (scope,
key) where state <> 'held'``. The reference's partial index needs nothing: ``reference`` is
NULL exactly where PostgreSQL's condition excludes the row.
"""

from __future__ import annotations

import contextlib
import math
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError, OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from ...models import IdempotencyRecord
from ...models.clock import UtcNow
from .names import BACKTICK_NAMES, statement
from .parameters import event_parameters, outcome_parameters

if TYPE_CHECKING:
    from ..operation import Operation

#: The lookup does not write the visit's event: the store logs it with ``LOG_EVENT``.
LOGS_IN_LOOKUP = False
#: Expired records in a claim's way are cleared by primary key: InnoDB's UPDATE or DELETE
#: filtered on the key or the reference may scan (a small table, other scopes' rows) and waits
#: for every locked row it passes, such as another key's claim still in flight.
CLEARS_BY_PRIMARY_KEY = True

_INSERT = """
INSERT INTO {records} (
    `scope`, `key`, `fingerprint`, `reference`, `requested_reference`, `state`,
    `request_method`, `request_path`, `response_headers`, `response_body`,
    `created_at`, `expires_at`, `replay_count`, `conflict_count`
)
VALUES (
    %(scope)s, %(key)s, %(fingerprint)s, %(reference)s, %(reference)s, 'in_flight',
    %(method)s, %(path)s, '[]', X'',
    UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %(ttl)s MICROSECOND, 0, 0
)
ON DUPLICATE KEY UPDATE `id` = `id` + LAST_INSERT_ID(0)
"""

# The claim. On a duplicate key the INSERT changes nothing and never raises (not ``INSERT
# IGNORE``, which would also turn truncations and bad values into warnings); what it does is
# take an exclusive lock on the entry in the way, so a copy that collides with an uncommitted
# claim waits for the original to commit (then it meets the committed record) or roll back
# (then it inserts). Exclusive, not the shared lock a failing plain INSERT takes: copies that
# each held a shared lock would deadlock when they go on to count their visit on the record.
# ``id + LAST_INSERT_ID(0)`` leaves the row as it is and makes the statement report the
# inserted id 0: nothing was inserted (the ``LAST_INSERT_ID(expr)`` idiom MySQL documents for
# this statement). CLAIMED then checks the row reported is ours: in flight, which another
# claim's row can only be inside this same transaction (a nested claim of the same key), and
# then the claim inserted nothing either.
#
# The wait is bounded by innodb_lock_wait_timeout (whole seconds) for this statement only.
# MariaDB: ``SET STATEMENT ... FOR``, which leaves the session untouched whatever happens.
CLAIM_MARIADB = statement(
    "SET STATEMENT innodb_lock_wait_timeout = %(lock_wait)s FOR " + _INSERT, BACKTICK_NAMES
)
# MySQL has no SET STATEMENT, and its SET_VAR hint does not take innodb_lock_wait_timeout: the
# session's value is saved, ours set, the INSERT run, and the saved value put back (also when
# the INSERT failed), so the view runs under the project's own.
CLAIM_MYSQL = statement(_INSERT, BACKTICK_NAMES)
SET_LOCK_WAIT = (
    "SET @idempotency_lock_wait = @@SESSION.innodb_lock_wait_timeout, "
    "SESSION innodb_lock_wait_timeout = %(lock_wait)s"
)
RESTORE_LOCK_WAIT = "SET SESSION innodb_lock_wait_timeout = @idempotency_lock_wait"

# The row the claim inserted, and when by the database's clock (no RETURNING on MySQL). A
# locking read of a row already locked by this transaction: it never waits.
CLAIMED = statement(
    "SELECT `state` = 'in_flight', `created_at` FROM {records} WHERE `id` = %(id)s FOR UPDATE",
    BACKTICK_NAMES,
)

# The committed record a claim met by its key (live and completed, so replayable), locked so
# the visit can be counted; looked up by the generated column's unique index, so InnoDB locks
# that one entry. ``replayed``: same fingerprint. The statement's clock comes back with it.
FIND_BY_KEY = statement(
    """
SELECT {record_columns},
    `fingerprint` = %(fingerprint)s AS replayed,
    1 AS replayable,
    UTC_TIMESTAMP(6) AS now
FROM {records}
WHERE `scope` = %(scope)s AND `idempotency_live_key` = %(key)s
    AND `state` = 'completed' AND `expires_at` > UTC_TIMESTAMP(6)
FOR UPDATE
""",
    BACKTICK_NAMES,
)

# The committed record a claim met by its reference: any record still holding it, also one
# whose response expired or was purged (state ``held``), which can no longer replay.
FIND_BY_REFERENCE = statement(
    """
SELECT {record_columns},
    `fingerprint` = %(fingerprint)s
        AND `state` = 'completed' AND `expires_at` > UTC_TIMESTAMP(6) AS replayed,
    `state` = 'completed' AND `expires_at` > UTC_TIMESTAMP(6) AS replayable,
    UTC_TIMESTAMP(6) AS now
FROM {records}
WHERE `scope` = %(scope)s AND `reference` = %(reference)s
    AND `state` IN ('completed', 'held')
    AND (`reference_expires_at` IS NULL OR `reference_expires_at` > UTC_TIMESTAMP(6))
FOR UPDATE
""",
    BACKTICK_NAMES,
)

# Count the visit on the record the lookup locked.
COUNT_VISIT = statement(
    """
UPDATE {records} SET
    `replay_count` = `replay_count` + %(replays)s,
    `conflict_count` = `conflict_count` + %(conflicts)s,
    `last_seen_at` = %(now)s
WHERE `id` = %(id)s
""",
    BACKTICK_NAMES,
)

# The outcome, dated by the database's clock. A NULL hold (no IDEMPOTENCY_REFERENCE_TTL) makes
# a NULL ``reference_expires_at``: held for as long as the row exists. No assignment reads a
# column assigned before it (MySQL would see the new value).
COMPLETE = statement(
    """
UPDATE {records} SET
    `state` = 'completed',
    `response_status` = %(status)s,
    `response_headers` = %(headers)s,
    `response_body` = %(body)s,
    `completed_at` = UTC_TIMESTAMP(6),
    `expires_at` = UTC_TIMESTAMP(6) + INTERVAL %(ttl)s MICROSECOND,
    `reference_expires_at` = UTC_TIMESTAMP(6) + INTERVAL %(hold)s MICROSECOND,
    `reference` = CASE WHEN %(keep_reference)s THEN `reference` END
WHERE `id` = %(record_id)s
""",
    BACKTICK_NAMES,
)

LOG_EVENT = statement(
    """
INSERT INTO {events} (
    `at`, `kind`, `scope`, `key`, `reference`, `fingerprint`, `record_id`, `expires_at`
)
VALUES (
    %(at)s, %(kind)s, %(scope)s, %(key)s, %(reference)s, %(fingerprint)s,
    %(record_id)s, %(expires_at)s
)
""",
    BACKTICK_NAMES,
)

_FIELDS = [field.attname for field in IdempotencyRecord._meta.concrete_fields]
_REPLAYS, _CONFLICTS, _LAST_SEEN = (
    _FIELDS.index(name) for name in ("replay_count", "conflict_count", "last_seen_at")
)


# ER_LOCK_DEADLOCK: InnoDB chose this transaction as a deadlock's victim and rolled it back.
_DEADLOCK = 1213
# Deadlocked claims retried at least (see ``claim``) before the deadlock is the store's
# WaitExpired.
DEADLOCK_RETRIES = 3


def claim(
    connection: BaseDatabaseWrapper, operation: Operation, now: datetime
) -> tuple[int, datetime] | None:
    """The claimed record's id and creation time by the database's clock, or ``None``.

    Copies waiting for a claim that then rolls back (a released answer) each hold a lock on
    the gap the row left, and their inserts deadlock; InnoDB rolls one back whole. When the
    claim was all its transaction held (the engine's own block, no outer one), nothing else
    was lost, so it is simply made again, as PostgreSQL's waiting copy would have gone on.
    """
    # Copies behind a chain of released originals can each deadlock again: retried for as long
    # as the claim's own bound (lock_timeout), and at least DEADLOCK_RETRIES times.
    deadline = time.monotonic() + operation.lock_timeout
    attempts = 0
    while True:
        try:
            return _claim(connection, operation)
        except OperationalError as exc:
            attempts += 1
            if attempts > DEADLOCK_RETRIES and time.monotonic() >= deadline:
                raise
            # The engine's block is the only one and opened the transaction itself (not one a
            # caller began by turning autocommit off, whose writes the deadlock also undid).
            alone = (
                connection.in_atomic_block
                and len(connection.atomic_blocks) == 1
                and connection.commit_on_exit
            )
            if not (alone and getattr(exc.__cause__, "args", (None,))[0] == _DEADLOCK):
                raise


def _claim(connection: BaseDatabaseWrapper, operation: Operation) -> tuple[int, datetime] | None:
    params = {
        # innodb_lock_wait_timeout counts whole seconds: a fraction is rounded up.
        "lock_wait": max(1, math.ceil(operation.lock_timeout)),
        "scope": operation.scope,
        "key": operation.key,
        "fingerprint": operation.fingerprint,
        "reference": operation.reference,
        "method": operation.method,
        "path": operation.path,
        "ttl": _microseconds(operation.ttl),
    }
    with connection.cursor() as cursor:
        if uses_set_statement(connection):
            cursor.execute(CLAIM_MARIADB, params)
            record_id = int(cursor.lastrowid or 0)
        else:
            record_id = _insert_with_session_lock_wait(cursor, params)
        if not record_id:
            return None  # met a committed record of the key or the reference
        cursor.execute(CLAIMED, {"id": record_id})
        row = cursor.fetchone()
    if row is None or not row[0]:
        return None
    return record_id, _aware(connection, row[1])


def uses_set_statement(connection: BaseDatabaseWrapper) -> bool:
    """Whether the claim bounds its wait with ``SET STATEMENT`` (MariaDB) rather than by
    saving and restoring the session's value (MySQL)."""
    return bool(connection.mysql_is_mariadb)  # type: ignore[attr-defined]


def _insert_with_session_lock_wait(cursor: Any, params: dict[str, Any]) -> int:
    """The claim's INSERT under our lock wait; the id it reports (read before the restoring
    SET, which resets it)."""
    cursor.execute(SET_LOCK_WAIT, params)
    try:
        cursor.execute(CLAIM_MYSQL, params)
        return int(cursor.lastrowid or 0)
    finally:
        # If the connection is gone, the INSERT's own error is the one to report.
        with contextlib.suppress(DatabaseError):
            cursor.execute(RESTORE_LOCK_WAIT)


def find_count_and_log(
    connection: BaseDatabaseWrapper,
    operation: Operation,
    *,
    by: str,
    now: datetime,
    event_limit: int | None,
) -> tuple[Any, ...] | None:
    """Every column of the record found (its counters as just moved), then ``replayed`` and
    ``replayable``; or ``None``. Logs nothing: ``LOGS_IN_LOOKUP`` is false."""
    params = {
        "scope": operation.scope,
        "key": operation.key,
        "reference": operation.reference,
        "fingerprint": operation.fingerprint,
    }
    with connection.cursor() as cursor:
        cursor.execute(FIND_BY_KEY if by == "key" else FIND_BY_REFERENCE, params)
        row = cursor.fetchone()
        if row is None:
            return None
        *columns, replayed, replayable, seen_at = row
        replays = 1 if replayed else 0
        cursor.execute(
            COUNT_VISIT,
            {"replays": replays, "conflicts": 1 - replays, "now": seen_at, "id": columns[0]},
        )
    columns[_REPLAYS] += replays
    columns[_CONFLICTS] += 1 - replays
    columns[_LAST_SEEN] = seen_at
    return (*columns, bool(replayed), bool(replayable))


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
        ttl=_microseconds(ttl),
        hold=None if hold is None else _microseconds(hold),
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
    """What expiry is judged by: the database's clock, not the app server's ``now``."""
    return UtcNow()


def _microseconds(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _aware(connection: BaseDatabaseWrapper, value: datetime) -> datetime:
    """A datetime read back raw, as Django's converters would give it."""
    if settings.USE_TZ and timezone.is_naive(value):
        return timezone.make_aware(value, connection.timezone)
    return value


def _datetime(connection: BaseDatabaseWrapper, value: datetime) -> Any:
    """A datetime as a DateTimeField stores it here (naive, in the connection's time zone)."""
    field: Any = IdempotencyRecord._meta.get_field("expires_at")
    return field.get_db_prep_save(value, connection)
