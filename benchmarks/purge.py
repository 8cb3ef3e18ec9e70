#!/usr/bin/env python3
"""Purge a million expired keys on PostgreSQL while another process keeps using the table.

    .venv/bin/python benchmarks/purge.py [--rows 1000000] [--batch-size 1000]
        [--baseline-seconds 15] [--server postgres://postgres@127.0.0.1:5432/postgres]

Creates a scratch database on the server (dropped at the end, also on errors), fills it with
``--rows`` expired records (and a replay event for every fifth), then:

1. baseline: a second process claims new keys and replays each once, through the engine, for
   ``--baseline-seconds``; no purge runs;
2. purge: the same load runs while this process purges every expired row with
   ``IdempotencyRecord.objects.purge_expired()``.

Prints the purge's rows/second and the insert (claim + store + commit) and replay latencies of
both phases: the worst, p99 and median, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SCOPES = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL URL of a database to connect to while creating the scratch one",
    )
    parser.add_argument("--load", metavar="OUT", help=argparse.SUPPRESS)  # the second process
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load:
        setup_django(args.database_url)
        run_load(Path(args.load))
        return

    name = f"idempotency_purge_bench_{os.getpid()}"
    database_url = with_database(args.server, name)
    admin_sql(args.server, f'CREATE DATABASE "{name}"')
    try:
        setup_django(database_url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.monotonic()
        fill(args.rows)
        print(f"filled {args.rows:,} expired records in {time.monotonic() - started:.1f}s")

        print(f"baseline: {args.baseline_seconds:.0f}s of inserts and replays, no purge ...")
        with load_process(database_url) as baseline:
            time.sleep(args.baseline_seconds)
        print("purge: the same load, while purging ...")
        with load_process(database_url) as during:
            time.sleep(1.0)  # let the load reach its pace first
            result = purge(args.batch_size)
        report(result, baseline.latencies, during.latencies)
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- setup --------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin_sql(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql)


def setup_django(database_url: str) -> None:
    sys.path.insert(0, str(ROOT))
    import dj_database_url
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_idempotency",
        ],
        DATABASES={"default": dj_database_url.parse(database_url, conn_max_age=None)},
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="benchmark",
    )
    django.setup()


def fill(rows: int) -> None:
    """Insert expired records server-side (a client-side insert would take longer than the
    purge), one replay event for every fifth, then ANALYZE as autovacuum eventually would."""
    from django.db import connection

    from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

    records = IdempotencyRecord._meta.db_table
    events = IdempotencyEvent._meta.db_table
    body = json.dumps({"id": 1, "status": "paid", "pad": "x" * 120})
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {records} (scope, key, fingerprint, reference, requested_reference,
                state, request_method, request_path, response_status, response_headers,
                response_body, created_at, completed_at, expires_at, last_seen_at,
                replay_count, conflict_count)
            SELECT 'order-list|auth.user:' || (g %% %s), 'old-' || g, md5(g::text) || md5(g::text),
                NULL, NULL, 'completed', 'POST', '/api/orders/', 201,
                '[["Content-Type", "application/json"]]'::jsonb, convert_to(%s, 'UTF8'),
                now() - interval '3 days' + g * interval '1 ms',
                now() - interval '3 days' + g * interval '1 ms',
                now() - interval '2 days' + g * interval '1 ms', NULL, 0, 0
            FROM generate_series(1, %s) AS g
            """,
            [SCOPES, body, rows],
        )
        cursor.execute(
            f"""
            INSERT INTO {events} (at, kind, scope, key, reference, fingerprint, record_id,
                expires_at)
            SELECT created_at + interval '2 seconds', 'replayed', scope, key, NULL, fingerprint,
                id, expires_at
            FROM {records} WHERE id %% 5 = 0
            """,
            [],
        )
        cursor.execute(f"ANALYZE {records}")
        cursor.execute(f"ANALYZE {events}")


def purge(batch_size: int) -> Any:
    from django_idempotency.models import IdempotencyRecord

    def progress(so_far: Any) -> None:
        if so_far.batches % 100 == 0:
            print(f"  {so_far.deleted:,} deleted, {so_far.rows_per_second:,.0f} rows/s", flush=True)

    return IdempotencyRecord.objects.purge_expired(batch_size=batch_size, progress=progress)


# -- the second process -------------------------------------------------------------------


class load_process:
    """Run ``--load`` in a subprocess; on exit stop it by PID and read its latencies."""

    def __init__(self, database_url: str) -> None:
        self.out = Path(tempfile.mkstemp(prefix="purge-load-", suffix=".json")[1])
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--load", str(self.out), "--database-url", database_url]
        )
        self.latencies: dict[str, list[float]] = {}

    def __enter__(self) -> load_process:
        deadline = time.monotonic() + 30
        while not self.out.read_text():  # the process writes "{}" once it is set up
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the load process did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.latencies = json.loads(self.out.read_text())
        self.out.unlink()


def run_load(out: Path) -> None:
    """Claim a new key and replay it, in a loop, timing both until SIGTERM."""
    from django.http import HttpResponse

    from django_idempotency.conf import app_settings
    from django_idempotency.core.engine import perform_once
    from django_idempotency.core.operation import Operation

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    run = uuid.uuid4().hex[:8]
    inserts: list[float] = []
    replays: list[float] = []

    def view() -> HttpResponse:
        return HttpResponse(b'{"id": 1}', status=201, content_type="application/json")

    def operation(number: int) -> Operation:
        return Operation(
            database="default",
            scope=f"order-list|auth.user:{number % SCOPES}",
            key=f"live-{run}-{number}",
            fingerprint="f" * 64,
            method="POST",
            path="/api/orders/",
            reference=None,
            ttl=app_settings.TTL,
            lock_timeout=app_settings.LOCK_TIMEOUT,
        )

    perform_once(operation(-1), view)  # connect before the clock starts
    out.write_text("{}")
    number = 0
    while not stopping:
        current = operation(number)
        started = time.perf_counter()
        perform_once(current, view)
        inserted = time.perf_counter()
        perform_once(current, view)
        replays.append(time.perf_counter() - inserted)
        inserts.append(inserted - started)
        number += 1
    out.write_text(json.dumps({"insert": inserts, "replay": replays}))


# -- the report ---------------------------------------------------------------------------


def report(result: Any, baseline: dict[str, list[float]], during: dict[str, list[float]]) -> None:
    print()
    print(
        f"purge: {result.deleted:,} records and {result.events_deleted:,} events in "
        f"{result.batches:,} batches, {result.seconds:.1f}s: "
        f"{result.rows_per_second:,.0f} records/s"
    )
    print()
    print(f"{'latency (ms)':<22}{'no purge':>12}{'during purge':>15}{'ratio':>8}")
    for kind in ("insert", "replay"):
        for label, pick in (("worst", max), ("p99", p99), ("median", statistics.median)):
            before, after = pick(baseline[kind]) * 1000, pick(during[kind]) * 1000
            print(f"{kind + ' ' + label:<22}{before:>12.2f}{after:>15.2f}{after / before:>7.1f}x")
        print(f"{kind + ' count':<22}{len(baseline[kind]):>12,}{len(during[kind]):>15,}")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


if __name__ == "__main__":
    main()
