"""What the soak reads from its database after the load: it waits for the tasks of acknowledged
operations (``drain``), then takes the final state the checker judges (``read_snapshot``). The
queries are written for PostgreSQL; ``Database.translate`` says them in another backend's words.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .checker import OutboxRow, RecordState, Snapshot, TaskRecord
from .doors import DOORS, Effect
from .services import Database
from .workload import POISON_TASK as POISON
from .workload import History

#: After the load, how long the run waits for the Celery tasks of acknowledged operations.
DRAIN_TIMEOUT = 180.0
RECORDS = "django_idempotency_idempotencyrecord"
EVENTS = "django_idempotency_idempotencyevent"
OUTBOX = "django_idempotency_outboxmessage"


async def drain(
    history: History, database: Database, url: str, timeout: float = DRAIN_TIMEOUT
) -> float:
    """Wait until every acknowledged operation of a door whose effect a task makes later
    (``Door.deferred``) has its row, every poison task its record, and the outbox holds no
    message the relay may still send, or ``timeout``: the checker then reads what is there (a
    row still missing is lost, a message still in the outbox never went). Returns the seconds
    waited."""
    started = time.monotonic()
    doors = [door for door in DOORS if door.deferred]
    awaited = {
        (op.door, op.token)
        for op in history.ops
        for door in doors
        if op.door == door.name
        and op.answered is not None
        and door.acknowledged(op.answered.status or 0)
    } | {(POISON, sent.task_id) for sent in history.poison}
    poisoned = (
        f"SELECT '{POISON}', \"key\" FROM {RECORDS}"
        f" WHERE scope = 'celery:{POISON}' AND state = 'completed'"
    )
    while time.monotonic() - started < timeout:

        def present() -> tuple[set[tuple[str, str]], int]:
            found = query(
                database,
                url,
                *(door.effects_sql for door in doors),
                poisoned,
                f"SELECT count(*) FROM {OUTBOX} WHERE parked_at IS NULL",
            )
            *effects, poison, unsent = found
            rows = {
                (door.name, str(row[2]))
                for door, got in zip(doors, effects, strict=True)
                for row in got
            }
            rows |= {(POISON, str(row[1])) for row in poison}
            return rows, int(unsent[0][0])

        found, unsent = await asyncio.to_thread(present)
        awaited -= found
        if not awaited and not unsent:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


def query(database: Database, url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    """The rows of each statement (written for PostgreSQL, translated for ``database``), on one
    connection."""
    conn = database.connect(url)
    try:
        results = []
        for statement in statements:
            cursor = conn.cursor()
            try:
                cursor.execute(database.translate(statement))
                results.append([tuple(row) for row in cursor.fetchall()])
            finally:
                cursor.close()
        return results
    finally:
        conn.close()


def read_snapshot(database: Database, url: str) -> Snapshot:
    *effects, rows, outbox, tasks = query(
        database,
        url,
        *(door.effects_sql for door in DOORS),
        f"SELECT r.id, r.state, r.replay_count, r.conflict_count,"
        f" SUM(CASE WHEN e.kind = 'replayed' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN e.kind IN ('mismatch', 'reference') THEN 1 ELSE 0 END)"
        f" FROM {RECORDS} r LEFT JOIN {EVENTS} e ON e.record_id = r.id"
        f" GROUP BY r.id, r.state, r.replay_count, r.conflict_count",
        f"SELECT task_id, attempts, parked_at IS NOT NULL, last_error FROM {OUTBOX}",
        f"SELECT scope, \"key\", state, response_status FROM {RECORDS} WHERE scope LIKE 'celery:%'",
    )
    return Snapshot(
        effects={
            door.name: [
                Effect(
                    door.name,
                    int(row[0]),
                    int(row[1]),
                    str(row[2]),
                    row[3],
                    float(row[4]),
                    None if len(row) < 6 or row[5] is None else str(row[5]),
                )
                for row in found
            ]
            for door, found in zip(DOORS, effects, strict=True)
        },
        records=[RecordState(*map(_plain, row)) for row in rows],
        outbox=[OutboxRow(str(row[0]), int(row[1]), bool(row[2]), row[3] or "") for row in outbox],
        tasks=[TaskRecord(str(row[0]), str(row[1]), str(row[2]), row[3]) for row in tasks],
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, str) else int(value)
