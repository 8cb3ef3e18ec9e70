"""A replay in one statement, measured here and not shipped (issue 24).

The claim's ``INSERT ... ON CONFLICT DO NOTHING`` and, gated on it inserting nothing, the key's
lookup (the counting ``UPDATE`` and its event ``INSERT``) in one CTE: a replay or mismatch is
``BEGIN``, one statement and ``COMMIT`` instead of two statements between them. Every part sees
the snapshot the statement started with, so a copy that waited for its original (the row
committed after that) sees nothing and takes the separate lookup, as the package does.

Measured against the package in the same rounds (``docs/benchmarks.md``, "Before and after
issue 24"): a replay gains a round trip, but every new key plans the whole CTE (about 0.1 ms
more planning on the server), and new keys are nearly all traffic; ``benchmarks/README.md``
has the figures. ``install()`` (called once by the bench app) wraps the store's ``claim`` and
the engine's ``_find_blocker``; the wrappers take this path only inside ``one_statement()``,
which one view of the bench project enters for its own requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import connections

from django_idempotency.conf import app_settings
from django_idempotency.core import engine, store
from django_idempotency.core.store.names import statement
from django_idempotency.core.store.postgresql import _commits_bookkeeping_only

_active: ContextVar[bool] = ContextVar("bench_one_statement", default=False)
# The record the claim's own statement found, handed to the engine's lookup step.
_found: ContextVar[Any] = ContextVar("bench_one_statement_found", default=None)

CLAIM_OR_FIND = statement("""
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
), found AS (
    UPDATE {records} SET
        "replay_count" = "replay_count"
            + CASE WHEN "fingerprint" = %(fingerprint)s THEN 1 ELSE 0 END,
        "conflict_count" = "conflict_count"
            + CASE WHEN "fingerprint" = %(fingerprint)s THEN 0 ELSE 1 END,
        "last_seen_at" = statement_timestamp()
    WHERE NOT EXISTS (SELECT FROM claimed)
        AND "scope" = %(scope)s AND "key" = %(key)s
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
SELECT
    (SELECT "id" FROM claimed),
    (SELECT "created_at" FROM claimed),
    set_config('lock_timeout', (SELECT previous FROM limits), true),
    set_config(
        'synchronous_commit',
        CASE WHEN %(relaxed)s AND EXISTS (SELECT FROM found)
            THEN 'off' ELSE current_setting('synchronous_commit') END,
        true
    ),
    found.*
FROM (SELECT 1) AS one LEFT JOIN found ON true
""")


@contextmanager
def one_statement() -> Iterator[None]:
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


def _claim_or_find(operation: Any, now: Any) -> tuple[Any, ...]:
    connection = connections[operation.database]
    params = {
        "lock_timeout": f"{max(1, round(operation.lock_timeout * 1000))}ms",
        "relaxed": _commits_bookkeeping_only(connection),
        "scope": operation.scope,
        "key": operation.key,
        "fingerprint": operation.fingerprint,
        "reference": operation.reference,
        "method": operation.method,
        "path": operation.path,
        "ttl": operation.ttl,
        "at": now,
        "event_limit": app_settings.MAX_EVENTS_PER_RECORD if app_settings.RECORD_EVENTS else None,
    }
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_OR_FIND, params)
        row: tuple[Any, ...] = cursor.fetchone()
    return row


def install() -> None:
    claim: Callable[..., Any] = store.claim
    if getattr(claim, "bench_wrapper", False):
        return
    find_blocker: Callable[..., Any] = engine._find_blocker

    def claim_or_find(operation: Any, now: Any) -> Any:
        if not _active.get():
            return claim(operation, now)
        with store._bounded_wait():
            row = _claim_or_find(operation, now)
        if row[0] is not None:
            return store.Claimed(id=int(row[0]), at=row[1])
        found = row[4:]
        if found[0] is not None:
            *columns, _replayed, replayable = found
            record = store._record_from_row(connections[operation.database], columns)
            _found.set(engine._Blocker(record, by_reference=False, replayable=bool(replayable)))
        return None

    def found_or_find_blocker(operation: Any, now: Any) -> Any:
        blocker = _found.get()
        if blocker is not None:
            _found.set(None)
            return blocker
        return find_blocker(operation, now)

    claim_or_find.bench_wrapper = True  # type: ignore[attr-defined]
    store.claim = claim_or_find  # type: ignore[assignment]
    engine._find_blocker = found_or_find_blocker  # type: ignore[assignment]
