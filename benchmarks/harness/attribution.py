"""Where each path's time goes, on both sides of the wire, statement by statement.

Per path (bare create, authenticated no-op, and django-idempotency's new key, replay, mismatch
and reference conflict), a batch of requests in-process, one path at a time:

- the server side from ``pg_stat_statements`` (reset before each batch; the private cluster
  preloads it with ``track_planning``): calls, execution and planning time, WAL bytes;
- the client side from Django: ``connection.execute_wrapper`` times every statement inside
  Django's cursor (psycopg's send, parameter dumping, the wait, result loading), and the
  connection's ``_commit`` the COMMIT, which psycopg sends outside any cursor;
- the package's own Python time: the time inside ``perform_once`` minus its statements and
  minus the view it runs.

psycopg sends a transaction's ``BEGIN`` from inside its first statement's ``execute``, so the
client side counts BEGIN's round trip in that statement (the server side lists it apart).
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
# and as pg_stat_statements normalises them ($1 for every constant).
_FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern, re.IGNORECASE | re.DOTALL))
    for label, pattern in (
        ("BEGIN", r"^\s*BEGIN\b"),
        ("COMMIT", r"^\s*COMMIT\b"),
        ("SAVEPOINT", r"^\s*SAVEPOINT\b"),
        ("RELEASE SAVEPOINT", r"^\s*RELEASE SAVEPOINT\b"),
        ("ROLLBACK TO SAVEPOINT", r"^\s*ROLLBACK TO SAVEPOINT\b"),
        ("ROLLBACK", r"^\s*ROLLBACK\b"),
        ("token authentication SELECT", r"authtoken_token"),
        ("order INSERT (the view)", r'^\s*INSERT INTO "bench_order"'),
        ("claim or lookup (one statement)", r"WITH limits AS MATERIALIZED.*\bfound AS"),
        ("claim", r"WITH limits AS MATERIALIZED"),
        ("lookup by key (+ counters, event)", r'found AS \(\s*UPDATE.*"key" = '),
        ("lookup by reference (+ counters, event)", r'found AS \(\s*UPDATE.*"reference" = '),
        ("completion UPDATE", r'^\s*UPDATE "django_idempotency_idempotencyrecord" SET "state" ='),
        ("foreign key check (inside the INSERT)", r'^\s*SELECT 1 FROM ONLY "public"\."auth_user"'),
        ("event INSERT", r'^\s*(WITH .*)?INSERT INTO "django_idempotency_idempotencyevent"'),
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

    original_commit = connection._commit

    def timed_commit() -> Any:
        start = perf_counter_ns()
        try:
            return original_commit()
        finally:
            spent = perf_counter_ns() - start
            tally.client_ns["COMMIT"] += spent
            tally.calls["COMMIT"] += 1
            if tally.zone == "package":
                tally.package_db_ns += spent

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
    connection._commit = timed_commit  # type: ignore[method-assign]
    policy.perform_once = perform_once  # type: ignore[assignment]
    try:
        with connection.execute_wrapper(wrapper):
            yield
    finally:
        del connection._commit
        policy.perform_once = original_perform  # type: ignore[assignment]


def _server_enabled() -> bool:
    with connection.cursor() as cursor:
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
        cursor.execute("SELECT pg_stat_statements_reset()")


def _server_read() -> dict[str, tuple[int, float, float, float]]:
    """calls, execution ms, planning ms, WAL bytes per family, since the last reset."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT query, calls, total_exec_time, total_plan_time, wal_bytes "
            "FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        for query, calls, exec_ms, plan_ms, wal in cursor.fetchall():
            if "pg_stat_statements" in query:
                continue
            entry = totals[family(query)]
            entry[0] += calls
            entry[1] += exec_ms
            entry[2] += plan_ms
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
        statements = []
        for label in dict.fromkeys([*tally.calls, *self.seen]):
            calls, exec_ms, plan_ms, wal = self.seen.get(label, (0, 0.0, 0.0, 0.0))
            client_calls = tally.calls.get(label, 0)
            statements.append(
                StatementCost(
                    label=label,
                    calls=max(client_calls, calls) / count,
                    client_ms=tally.client_ns[label] / 1e6 / count if client_calls else None,
                    exec_ms=exec_ms / count if server else None,
                    plan_ms=plan_ms / count if server else None,
                    wal_bytes=wal / count if server else None,
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
