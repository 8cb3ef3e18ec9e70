#!/usr/bin/env python3
"""The headline ratios on each database server: PostgreSQL's and MariaDB's side by side.

    make bench-databases                    # PostgreSQL and MariaDB on 127.0.0.1
    make bench-databases ARGS=--quick       # fewer rounds, about 2 minutes
    python3 benchmarks/databases.py --server mysql://root@127.0.0.1:3306/ --server ...

For each server, in a process of its own (Django's settings are fixed once set up): a scratch
database (``idempotency_bench_<pid>``, dropped at the end), the benchmark project migrated into
it, then one interleaved run in-process and one over HTTP (gunicorn, 4 gthread workers) of the
bare create, the authenticated no-op, and django-idempotency's new key and replay
(``harness.measure.interleaved``, as in ``run.py``). Prints a Markdown table: a new key against
the bare create and a replay against the no-op, each ratio from one server's own run.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
SERVERS = ["postgres://postgres@127.0.0.1:5432/postgres", "mysql://root@127.0.0.1:3306/"]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--server",
        action="append",
        help="an admin URL allowed to CREATE DATABASE, postgres:// or mysql:// (repeatable; "
        f"default: {' and '.join(SERVERS)})",
    )
    parser.add_argument("--quick", action="store_true", help="100 rounds instead of 600")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one server, in a child process
    parser.add_argument("--attribute", help=argparse.SUPPRESS)  # run.py's MariaDB attribution
    parser.add_argument("--requests", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=20, help=argparse.SUPPRESS)
    return parser.parse_args()


def _is_mysql(url: str) -> bool:
    return urlsplit(url).scheme in ("mysql", "mariadb")


@contextmanager
def _scratch_mysql(admin_url: str) -> Iterator[str]:
    """Create ``idempotency_bench_<pid>`` on a MariaDB/MySQL server, drop it whatever happens."""
    import dj_database_url
    import MySQLdb

    name = f"idempotency_bench_{os.getpid()}"
    settings = dj_database_url.parse(admin_url)

    def run(statement: str) -> None:
        connection = MySQLdb.connect(
            host=settings["HOST"],
            port=int(settings["PORT"] or 3306),
            user=settings["USER"],
            password=settings["PASSWORD"] or "",
            autocommit=True,
        )
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()

    run(f"DROP DATABASE IF EXISTS `{name}`")
    run(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    finally:
        from django.db import connections

        connections.close_all()
        run(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def _django_on(admin_url: str) -> Iterator[str]:
    """Django set up on a scratch database of the server at ``admin_url``; yield its URL."""
    sys.path.insert(0, str(BENCH_DIR))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    from harness import database

    scratch = _scratch_mysql if _is_mysql(admin_url) else database.scratch_database
    with scratch(admin_url) as database_url:
        os.environ["BENCH_DATABASE_URL"] = database_url
        import django

        django.setup()
        yield database_url


def _version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = str(cursor.fetchone()[0])
    # "PostgreSQL 15.20 (Debian ...) on x86_64 ...", "10.11.19-MariaDB-0+deb12u1"
    return (
        f"MariaDB {version.split('-')[0]}"
        if "MariaDB" in version
        else " ".join(version.split()[:2])
    )


# The attribution's server side on MariaDB: performance_schema on (only a start turns it on),
# statement digests long enough to keep the claim's ON DUPLICATE KEY UPDATE.
PERFORMANCE_SCHEMA = (
    "--performance-schema=ON",
    "--performance-schema-consumer-statements-digest=ON",
    "--max-digest-length=4096",
    "--performance-schema-max-digest-length=4096",
)


def mariadb_attribution(requests: int, warmup: int) -> tuple[str, list[Any]]:
    """harness/attribution.py on a private MariaDB server with performance_schema on (the
    tests' MariaDBServer), in a child process (Django's settings are fixed once set up)."""
    sys.path.insert(0, str(BENCH_DIR.parent))
    from tests.services import MariaDBServer, free_port, private_dir

    root = private_dir("idempotency-bench-mariadb-", "mysql")
    server = MariaDBServer(root=root, port=free_port(), options=PERFORMANCE_SCHEMA)
    try:
        server.init()
        server.start()
        command = [sys.executable, __file__, "--attribute", server.url()]
        command += ["--requests", str(requests), "--warmup", str(warmup)]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"MariaDB attribution failed:\n{child.stdout}{child.stderr}")
        version, paths = pickle.loads(base64.b64decode(child.stdout.strip().splitlines()[-1]))
        return version, paths
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _attribute(admin_url: str, requests: int, warmup: int) -> str:
    """The child's side of ``mariadb_attribution``: the paths' costs, pickled, base64."""
    with _django_on(admin_url):
        from harness import attribution, database
        from harness.clients import InProcess
        from harness.variants import BARE, FLOOR, OURS, REFERENCED

        token = database.prepare_schema_and_user()
        paths = attribution.attribute(
            InProcess(token), bare=BARE, floor=FLOOR, ours=OURS, referenced=REFERENCED,
            requests=requests, warmup=warmup,
        )  # fmt: skip
        return base64.b64encode(pickle.dumps((_version(), paths))).decode()


def _measure(admin_url: str, rounds: int) -> dict[str, Any]:
    """One server's interleaved runs, in-process and over HTTP: medians and ratios."""
    with _django_on(admin_url) as database_url:
        from harness import database, server
        from harness.clients import InProcess, OverHttp
        from harness.measure import CREATE, FIRST, REPLAY, Series, interleaved
        from harness.variants import BARE, FLOOR, OURS

        token = database.prepare_schema_and_user()
        version = _version()
        series = [Series(BARE, CREATE), Series(FLOOR, CREATE)]
        series += [Series(OURS, FIRST), Series(OURS, REPLAY)]
        warmup = rounds // 5
        found: dict[str, Any] = {"server": admin_url, "version": version, "rounds": rounds}
        inprocess = interleaved(
            InProcess(token), series, rounds=rounds, warmup=warmup, tag="inproc"
        )
        with server.gunicorn(
            database_url=database_url, workers=4, worker_class="gthread",
            log_path=BENCH_DIR / "out" / "gunicorn-databases.log",
        ) as base_url:  # fmt: skip
            sender = OverHttp(base_url, token)
            http = interleaved(sender, series, rounds=rounds, warmup=warmup, tag="http")
            sender.close()
        for name, results in (("in-process", inprocess), ("HTTP", http)):
            bare, floor, first, replay = (results.summary(s) for s in series)
            found[name] = {
                "bare": bare.median_ms,
                "floor": floor.median_ms,
                "new key": first.median_ms,
                "replay": replay.median_ms,
                "new key / bare": first.ratio_to(bare),
                "replay / no-op": replay.ratio_to(floor),
                "replays differing": sum(results.replay_differs.values()),
            }
        return found


def _table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| server | path | bare create | new key | new key / bare | no-op | replay "
        "| replay / no-op |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for path in ("in-process", "HTTP"):
            row = run[path]
            lines.append(
                f"| {run['version']} | {path} | {row['bare']:.2f} ms | {row['new key']:.2f} ms "
                f"| **{row['new key / bare']:.2f}x** | {row['floor']:.2f} ms "
                f"| {row['replay']:.2f} ms | **{row['replay / no-op']:.2f}x** |"
            )
    return "\n".join(lines)


def main() -> int:
    arguments = _arguments()
    rounds = 100 if arguments.quick else 600
    if arguments.measure:
        print(json.dumps(_measure(arguments.measure, rounds)))
        return 0
    if arguments.attribute:
        print(_attribute(arguments.attribute, arguments.requests, arguments.warmup))
        return 0
    runs = []
    started = time.monotonic()
    for url in arguments.server or SERVERS:
        print(f"[{time.monotonic() - started:5.0f} s] {url}: {rounds} rounds ...", flush=True)
        command = [sys.executable, __file__, "--measure", url] + (
            ["--quick"] if arguments.quick else []
        )
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stdout + child.stderr, file=sys.stderr)
            return 1
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{_table(runs)}\n")
    print(f"{rounds} interleaved rounds per server and path; load average at the end: {load}")
    return 0


if __name__ == "__main__":
    from run import _bootstrap, _in_venv

    if not _in_venv():
        _bootstrap(Path(__file__))
    sys.exit(main())
