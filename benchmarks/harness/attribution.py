"""Where each path's time goes, on both sides of the wire, statement by statement.

Per path (bare create, authenticated no-op, and django-idempotency's new key, replay, mismatch
and reference conflict), a batch of requests in-process, one path at a time:

- the server side: on PostgreSQL from ``pg_stat_statements`` (reset before each batch; the
  private cluster preloads it with ``track_planning``): calls, execution and planning time, WAL
  bytes; on MariaDB from performance_schema's ``events_statements_summary_by_digest``
  (truncated before each batch; the private server starts with it on): calls and time
  (``SUM_TIMER_WAIT``, parsing and optimising included: MariaDB does not time them apart);
- the client side from Django: ``connection.execute_wrapper`` times every statement inside
  Django's cursor (the driver's send, parameter dumping, the wait, result loading), and the
  connection's ``_commit`` the COMMIT, which the driver sends outside any cursor;
- the package's own Python time: the time inside ``perform_once`` minus its statements and
  minus the view it runs.

psycopg sends a transaction's ``BEGIN`` from inside its first statement's ``execute``, so the
client side counts BEGIN's round trip in that statement (the server side lists it apart).
mysqlclient sends ``SET autocommit`` (a transaction's start and end) outside any cursor: the
connection's ``_set_autocommit`` is timed as the COMMIT is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from django.db import connection

from .clients import InProcess
from .variants import Variant, order_body

# Statement families, both as Django sends them (values inlined by the client-side binding)
# and as the server normalises them ($1 or ? for every constant), in either quoting: "" on
# PostgreSQL, `` on MariaDB.
_Q = '["`]'
AUTOCOMMIT = "SET autocommit (outside the cursor)"
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern.replace("'Q'", _Q), re.IGNORECASE | re.DOTALL))
    for label, pattern in (
        ("BEGIN", r"^\s*BEGIN\b"),
        ("COMMIT", r"^\s*COMMIT\b"),
        ("SAVEPOINT", r"^\s*SAVEPOINT\b"),
        ("RELEASE SAVEPOINT", r"^\s*RELEASE SAVEPOINT\b"),
        ("ROLLBACK TO SAVEPOINT", r"^\s*ROLLBACK TO SAVEPOINT\b"),
        ("ROLLBACK", r"^\s*ROLLBACK\b"),
        (AUTOCOMMIT, r"^\s*SET 'Q'?autocommit"),
        ("token authentication SELECT", r"authtoken_token"),
        ("order INSERT (the view)", r"^\s*INSERT INTO 'Q'bench_order"),
        ("claim or lookup (one statement)", r"WITH limits AS MATERIALIZED.*\bfound AS"),
        ("claim", r"WITH limits AS MATERIALIZED"),
        ("lookup by key (+ counters, event)", r"found AS \(\s*UPDATE.*'Q'key'Q' = "),
        ("lookup by reference (+ counters, event)", r"found AS \(\s*UPDATE.*'Q'reference'Q' = "),
        # MariaDB's statements (core/store/mysql.py): no RETURNING, no writable CTE.
        ("claim INSERT ... ON DUPLICATE KEY UPDATE", r"ON DUPLICATE KEY UPDATE"),
        ("claimed row SELECT ... FOR UPDATE", r"^\s*SELECT 'Q'state'Q' = .*FOR UPDATE"),
        ("lookup by key SELECT ... FOR UPDATE", r"'Q'idempotency_live_key'Q' = .*FOR UPDATE"),
        ("lookup by reference SELECT ... FOR UPDATE", r"replayable.*FOR UPDATE"),
        ("counters UPDATE", r"^\s*UPDATE \S*idempotencyrecord\S* SET 'Q'replay_count"),
        ("completion UPDATE", r"^\s*UPDATE \S*idempotencyrecord\S* SET 'Q'state"),
        ("foreign key check (inside the INSERT)", r'^\s*SELECT 1 FROM ONLY "public"\."auth_user"'),
        ("event INSERT", r"^\s*(WITH .*)?INSERT INTO 'Q'django_idempotency_idempotencyevent"),
    )
)


def family(sql: str) -> str:
    for label, pattern in _FAMILIES:
        if pattern.search(sql):
            return label
    return " ".join(sql.split())[:60]


@dataclass
class StatementCost:
    label: str
    calls: float  # per request
    client_ms: float | None  # per request, inside Django's cursor (or the COMMIT call)
    exec_ms: float | None = None  # per request, on the server
    plan_ms: float | None = None
    wal_bytes: float | None = None


@dataclass
class PathCost:
    name: str
    variant: Variant
    requests: int
    median_ms: float
    mean_ms: float
    statements: list[StatementCost]
    #: Inside perform_once, minus its statements and the view (``None``: no package).
    package_ms: float | None
    #: The view perform_once ran (its statements included), and its statements alone.
    view_ms: float | None
    view_db_ms: float | None
    server_available: bool

    @property
    def client_db_ms(self) -> float:
        return sum(s.client_ms or 0.0 for s in self.statements)

    @property
    def rest_ms(self) -> float:
        """Everything else: Django, DRF, authentication's Python, the test client."""
        view_python = (self.view_ms or 0.0) - (self.view_db_ms or 0.0)
        return self.mean_ms - self.client_db_ms - (self.package_ms or 0.0) - view_python

    @property
    def server_ms(self) -> float:
        return sum((s.exec_ms or 0.0) + (s.plan_ms or 0.0) for s in self.statements)

    def statement(self, label: str) -> StatementCost | None:
        return next((s for s in self.statements if s.label == label), None)


@dataclass
class _Tally:
    zone: str = "outside"
    client_ns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    package_ns: int = 0
    view_ns: int = 0
    package_db_ns: int = 0
    view_db_ns: int = 0


@contextmanager
def _client_hooks(tally: _Tally) -> Iterator[None]:
    """Time every statement and COMMIT, and the package's own calls, into ``tally``."""
    from django_idempotency.core import policy

    def wrapper(
        execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = perf_counter_ns()
        try:
            return execute(sql, params, many, context)
        finally:
            spent = perf_counter_ns() - start
            label = family(sql)
            tally.client_ns[label] += spent
            tally.calls[label] += 1
            if tally.zone == "package":
                tally.package_db_ns += spent
            elif tally.zone == "view":
                tally.view_db_ns += spent

    def timed(label: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any) -> Any:
            start = perf_counter_ns()
            try:
                return call(*args)
            finally:
                spent = perf_counter_ns() - start
                tally.client_ns[label] += spent
                tally.calls[label] += 1
                if tally.zone == "package":
                    tally.package_db_ns += spent

        return timed_call

    original_perform = policy.perform_once

    def perform_once(operation: Any, view: Callable[[], Any]) -> Any:
        def timed_view() -> Any:
            tally.zone = "view"
            start = perf_counter_ns()
            try:
                return view()
            finally:
                tally.view_ns += perf_counter_ns() - start
                tally.zone = "package"

        tally.zone = "package"
        start = perf_counter_ns()
        try:
            return original_perform(operation, timed_view)
        finally:
            tally.package_ns += perf_counter_ns() - start
            tally.zone = "outside"

    connection.ensure_connection()
    connection._commit = timed("COMMIT", connection._commit)  # type: ignore[method-assign]
    if _mariadb():  # a round trip on mysqlclient (none on psycopg): not the package's Python
        connection._set_autocommit = timed(  # type: ignore[method-assign]
            AUTOCOMMIT, connection._set_autocommit
        )
    policy.perform_once = perform_once  # type: ignore[assignment]
    try:
        with connection.execute_wrapper(wrapper):
            yield
    finally:
        del connection._commit
        if _mariadb():
            del connection._set_autocommit
        policy.perform_once = original_perform  # type: ignore[assignment]


def _mariadb() -> bool:
    return connection.vendor == "mysql"


def _server_enabled() -> bool:
    with connection.cursor() as cursor:
        if _mariadb():  # performance_schema is on only if the server started with it
            cursor.execute("SELECT @@performance_schema")
            return bool(cursor.fetchone()[0])
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
        if cursor.fetchone() is not None:
            return True
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cursor.execute("SELECT count(*) FROM pg_stat_statements")
        except Exception:  # not preloaded on this server: client side only
            return False
    return True


def _server_reset() -> None:
    with connection.cursor() as cursor:
        if _mariadb():
            cursor.execute("TRUNCATE TABLE performance_schema.events_statements_summary_by_digest")
        else:
            cursor.execute("SELECT pg_stat_statements_reset()")


# Per family since the last reset: calls, execution ms, planning ms, WAL bytes. MariaDB's
# timer is in picoseconds and covers the whole statement; it has no planning or WAL figure (0).
_SERVER_READ = {
    "postgresql": (
        "SELECT query, calls, total_exec_time, total_plan_time, wal_bytes "
        "FROM pg_stat_statements WHERE dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
    ),
    "mysql": (
        "SELECT DIGEST_TEXT, COUNT_STAR, SUM_TIMER_WAIT / 1e9, 0, 0 "
        "FROM performance_schema.events_statements_summary_by_digest "
        "WHERE SCHEMA_NAME = DATABASE() AND DIGEST_TEXT IS NOT NULL"
    ),
}


def _server_read() -> dict[str, tuple[int, float, float, float]]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    with connection.cursor() as cursor:
        cursor.execute(_SERVER_READ[connection.vendor])
        for query, calls, exec_ms, plan_ms, wal in cursor.fetchall():
            if "pg_stat_statements" in query or "performance_schema" in query:
                continue
            entry = totals[family(query)]
            entry[0] += calls
            entry[1] += float(exec_ms)
            entry[2] += float(plan_ms)
            entry[3] += float(wal)
    return {label: (int(v[0]), v[1], v[2], v[3]) for label, v in totals.items()}


Request = tuple[str, bytes, str | None]  # path, body, key


@dataclass
class _Batch:
    """One path's requests and what measuring them gathered, over every round."""

    name: str
    variant: Variant
    expect: int
    tally: _Tally = field(default_factory=_Tally)
    elapsed: list[int] = field(default_factory=list)
    seen: dict[str, list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    )

    def measure(self, client: InProcess, requests: list[Request], server: bool) -> None:
        if server:
            _server_reset()
        with _client_hooks(self.tally):
            for path, body, key in requests:
                reply = client.post(path, body, key)
                if reply.status != self.expect:
                    raise RuntimeError(
                        f"{self.name}: expected {self.expect}, got {reply.status}: {reply.body!r}"
                    )
                self.elapsed.append(reply.elapsed_ns)
        if server:
            for label, values in _server_read().items():
                for index, value in enumerate(values):
                    self.seen[label][index] += value

    def cost(self, server: bool) -> PathCost:
        tally, count = self.tally, len(self.elapsed)
        mariadb, statements = _mariadb(), []
        for label in dict.fromkeys([*tally.calls, *self.seen]):
            calls, exec_ms, plan_ms, wal = self.seen.get(label, (0, 0.0, 0.0, 0.0))
            client_calls = tally.calls.get(label, 0)
            statements.append(
                StatementCost(
                    label=label,
                    calls=max(client_calls, calls) / count,
                    client_ms=tally.client_ns[label] / 1e6 / count if client_calls else None,
                    exec_ms=exec_ms / count if server else None,
                    plan_ms=plan_ms / count if server and not mariadb else None,
                    wal_bytes=wal / count if server and not mariadb else None,
                )
            )
        statements.sort(key=lambda s: -((s.client_ms or 0.0) + (s.exec_ms or 0.0)))
        ordered = sorted(self.elapsed)
        package = view = view_db = None
        if tally.package_ns:
            view = tally.view_ns / 1e6 / count
            view_db = tally.view_db_ns / 1e6 / count
            package = (tally.package_ns - tally.view_ns - tally.package_db_ns) / 1e6 / count
        return PathCost(
            name=self.name,
            variant=self.variant,
            requests=count,
            median_ms=ordered[len(ordered) // 2] / 1e6,
            mean_ms=sum(self.elapsed) / count / 1e6,
            statements=statements,
            package_ms=package,
            view_ms=view,
            view_db_ms=view_db,
            server_available=server,
        )


def attribute(
    client: InProcess,
    *,
    bare: Variant,
    floor: Variant,
    ours: Variant,
    referenced: Variant,
    requests: int,
    warmup: int,
    rounds: int = 10,
) -> list[PathCost]:
    """Every path, ``requests`` requests each after ``warmup``, in ``rounds`` rounds: each round
    measures a slice of every path in turn (so drift hits them alike), reading the server's
    statistics after each slice."""
    server = _server_enabled()

    def fresh(prefix: str, variant: Variant, size: int, keyed: bool = True) -> list[Request]:
        return [
            (variant.path, order_body(f"{prefix}-{index}"), variant.new_key() if keyed else None)
            for index in range(size)
        ]

    def warm(rows: list[Request], expect: int) -> None:
        for path, body, key in rows:
            reply = client.post(path, body, key)
            assert reply.status == expect, (path, reply.status, reply.body)

    warm(fresh("attr-warm-bare", bare, warmup, keyed=False), 201)
    warm(fresh("attr-warm-floor", floor, warmup, keyed=False), 201)
    warm(fresh("attr-warm-ours", ours, warmup), 201)
    warm(fresh("attr-warm-ref", referenced, warmup), 201)

    batches = {
        name: _Batch(name, variant, expect)
        for name, variant, expect in (
            ("bare create", bare, 201),
            ("authenticated no-op", floor, 201),
            ("new key", ours, 201),
            ("replay", ours, 201),
            ("mismatch", ours, 422),
            ("reference conflict", referenced, 409),
        )
    }
    size = max(1, requests // rounds)
    for number in range(rounds):
        tag = f"attr{number}"
        firsts = fresh(f"{tag}-ours", ours, size)
        # A reference held by an earlier success, met by a new key with another request: 409.
        held = fresh(f"{tag}-held", referenced, size)
        warm(held, 201)
        slices = {
            "bare create": fresh(f"{tag}-bare", bare, size, keyed=False),
            "authenticated no-op": fresh(f"{tag}-floor", floor, size, keyed=False),
            "new key": firsts,
            "replay": firsts,  # each a key's first replay, as in the interleaved rounds
            "mismatch": [
                (path, order_body(f"{tag}-other-{i}"), key)
                for i, (path, _, key) in enumerate(firsts)
            ],
            "reference conflict": [
                (path, body.replace(b'"quantity":2', b'"quantity":3'), referenced.new_key())
                for path, body, _ in held
            ],
        }
        for name, batch in batches.items():
            batch.measure(client, slices[name], server)
    return [batch.cost(server) for batch in batches.values()]
