#!/usr/bin/env python3
"""Benchmark django-idempotency against the bare DRF create and the other Django packages.

    make bench                        # or: python3 benchmarks/run.py
    python3 benchmarks/run.py --quick # small counts, about 2 minutes; writes benchmarks/out/
    python3 benchmarks/run.py --help  # the other options

Creates benchmarks/.venv (the competitors live only there), a scratch PostgreSQL database that
it drops at the end, and gunicorn servers on 127.0.0.1 that it stops by PID. Writes
docs/benchmarks.md (a quick or partial run writes benchmarks/out/benchmarks-partial.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.measure import Results, Series
    from harness.report import Run

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
REQUIREMENTS = BENCH_DIR / "requirements.txt"
OUT_DIR = BENCH_DIR / "out"
LAST_RUN = OUT_DIR / "last-run.pickle"
PARTS = [
    "sql",
    "attribution",
    "inprocess",
    "doors",
    "nosync",
    "profile",
    "http",
    "storm",
    "throughput",
    "growth",
]


def _bootstrap(script: Path = Path(__file__)) -> None:
    """Re-run ``script`` (this one by default) inside benchmarks/.venv, creating or updating it
    first."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != wanted:
        print("installing the benchmark's requirements ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS),
             "-e", str(REPO)],
            check=True,
        )  # fmt: skip
        stamp.write_text(wanted)
    os.execv(str(python), [str(python), str(script.resolve()), *sys.argv[1:]])


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (about 2 minutes)")
    parser.add_argument(
        "--no-ten-million",
        action="store_true",
        help="skip the 10-million-record row (it takes ~3 minutes and ~6 GB of disk)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_ADMIN_DATABASE_URL"),
        help="use this PostgreSQL server (a role allowed to CREATE DATABASE) instead of a "
        "private cluster; the attribution's server side then needs pg_stat_statements there",
    )
    parser.add_argument(
        "--pg-bindir",
        default=os.environ.get("BENCH_PG_BINDIR", "/usr/lib/postgresql/15/bin"),
        help="initdb and pg_ctl of the private cluster (default: %(default)s)",
    )
    parser.add_argument(
        "--no-mariadb",
        action="store_true",
        help="no attribution on MariaDB (it starts a private server: mariadb-install-db, mariadbd)",
    )
    parser.add_argument("--output", type=Path, help="the Markdown report to write")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help=f"rewrite the report from the last run's results ({LAST_RUN.name}), measuring nothing",
    )
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only these parts (repeatable); the default runs everything",
    )
    return parser.parse_args()


class Plan:
    def __init__(self, quick: bool, ten_million: bool) -> None:
        self.rounds = 100 if quick else 1000
        self.warmup = 20 if quick else 100
        self.http_rounds = 100 if quick else 800
        self.storm_keys = 5 if quick else 20
        self.storm_copies = 50
        self.growth_sizes = [10_000, 100_000] if quick else [10_000, 1_000_000]
        if not quick and ten_million:
            self.growth_sizes.append(10_000_000)
        self.growth_rounds = 100 if quick else 400
        self.body_rounds = 100 if quick else 400
        self.profile_requests = 200 if quick else 1500
        self.saturation_clients = 12
        self.saturation_seconds = 3.0 if quick else 10.0
        self.saturation_repeats = 2 if quick else 3
        self.attribution_requests = 200 if quick else 600

    def describe(self) -> dict[str, str]:
        return {
            "in-process rounds": f"{self.rounds} (+{self.warmup} warm-up)",
            "HTTP rounds": f"{self.http_rounds} (+{self.warmup} warm-up)",
            "storm": f"{self.storm_keys} keys x {self.storm_copies} copies",
            "growth rounds": str(self.growth_rounds),
            "body-size rounds": str(self.body_rounds),
            "profiled requests": f"{self.profile_requests} per path",
            "attribution": f"{self.attribution_requests} requests per path",
            "saturation": f"{self.saturation_clients} clients x {self.saturation_seconds:.0f} s "
            f"x {self.saturation_repeats} per variant",
        }


def main() -> int:
    arguments = _arguments()
    started = time.monotonic()
    sys.path.insert(0, str(BENCH_DIR))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    from harness import database

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {message}", flush=True)

    plan = Plan(arguments.quick, not arguments.no_ten_million)
    parts = set(arguments.only or PARTS)
    # Only a full run of every part may replace the published report.
    partial = arguments.quick or arguments.only
    output = arguments.output or (
        OUT_DIR / "benchmarks-partial.md" if partial else REPO / "docs" / "benchmarks.md"
    )
    if arguments.render_only:
        import django

        django.setup()
        run = pickle.loads(LAST_RUN.read_bytes())
        output = arguments.output or run.output
    else:
        with contextlib.ExitStack() as stack:
            admin_url, server_note = stack.enter_context(_server(arguments, log))
            database_url = stack.enter_context(database.scratch_database(admin_url))
            os.environ["BENCH_DATABASE_URL"] = database_url
            import django

            django.setup()
            run = _measure(arguments, plan, parts, database_url, log)
            run.server_note = server_note
            run.seconds = time.monotonic() - started
            run.load_after = os.getloadavg()
            run.uptime_after = _uptime()
        run.output = output
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        # Kept so the report's wording can change without measuring again (--render-only).
        LAST_RUN.write_bytes(pickle.dumps(run))
    from harness.report import headline, markdown

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown(run))
    log(f"wrote {output}")
    for line in headline(run):
        print("  " + line)
    return 0


@contextlib.contextmanager
def _server(arguments: argparse.Namespace, log: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """The admin URL to create the scratch database on, and how the report describes it."""
    from harness import cluster

    if arguments.database_url:
        yield arguments.database_url, "the server of `--database-url` (its own settings)"
        return
    if not cluster.available(arguments.pg_bindir):
        raise SystemExit(
            f"no initdb/pg_ctl in {arguments.pg_bindir}: pass --pg-bindir, or --database-url "
            "to measure on an existing server"
        )
    with cluster.private_cluster(arguments.pg_bindir) as admin_url:
        log(f"private PostgreSQL cluster on {admin_url.rsplit('@', 1)[-1]}")
        yield (
            admin_url,
            (
                "a private cluster started for this run (`initdb`, default settings plus "
                "`pg_stat_statements` with `track_planning`; removed at the end)"
            ),
        )


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _measure(
    arguments: argparse.Namespace,
    plan: Plan,
    parts: set[str],
    database_url: str,
    log: Callable[[str], None],
) -> Run:
    from harness import (
        attribution,
        database,
        environment,
        growth,
        profiling,
        queries,
        saturation,
        server,
        storm,
    )
    from harness.clients import InProcess, OverHttp
    from harness.measure import CREATE, FIRST, REPLAY, Series, interleaved
    from harness.report import Run
    from harness.variants import (
        BARE,
        BEFORE_24,
        DOORS,
        FLOOR,
        IDEMPOTENT,
        ONE_STATEMENT,
        OURS,
        PREVIOUS,
        REFERENCED,
        SAVEPOINT,
        STORMED,
        VARIANTS_SHOWN,
    )

    token = database.prepare_schema_and_user()
    given = " ".join(sys.argv[1:])
    command = "make bench" + (f" ARGS='{given}'" if given else "")
    run = Run(
        command=command,
        quick=arguments.quick,
        machine=environment.machine(),
        versions=environment.versions(),
        postgres=database.server_version(),
        plan=plan.describe(),
        floor=database.probe_floor(),
        load_before=os.getloadavg(),
        uptime_before=_uptime(),
    )
    log("floor: " + ", ".join(f"{name} {value:.3f} ms" for name, value in run.floor.items()))
    client = InProcess(token)
    series = [Series(BARE, CREATE), Series(FLOOR, CREATE)]
    for variant in IDEMPOTENT:
        series += [Series(variant, FIRST), Series(variant, REPLAY)]

    run.inprocess_series = run.http_series = series

    if "sql" in parts:
        log("tracing the SQL of each path ...")
        run.traces = queries.trace_paths(client, VARIANTS_SHOWN)
        for trace in run.traces:
            log(
                f"  {trace.variant.label:38} {trace.path:9} {trace.status}: "
                f"{len(trace.statements)} statements, {len(trace.round_trips)} round trips, "
                f"{trace.durable_commits} durable commits"
            )
    if "attribution" in parts:
        log(f"attribution: {plan.attribution_requests} requests per path ...")
        database.settle()
        paths = attribution.attribute(
            client, bare=BARE, floor=FLOOR, ours=OURS, referenced=REFERENCED,
            requests=plan.attribution_requests, warmup=plan.warmup,
        )  # fmt: skip
        run.attributions[f"PostgreSQL {run.postgres.split()[0]}"] = paths
        if not arguments.no_mariadb:
            log("attribution on a private MariaDB server ...")
            from databases import mariadb_attribution

            version, on_mariadb = mariadb_attribution(plan.attribution_requests, plan.warmup)
            run.attributions[version] = on_mariadb
        for backend, found in run.attributions.items():
            for path in found:
                package = path.package_ms if path.package_ms is not None else 0.0
                log(
                    f"  {backend[:10]:10} {path.name:20} mean {path.mean_ms:6.2f} ms: statements "
                    f"{path.client_db_ms:5.2f} ms in Django ({path.server_ms:5.3f} ms on the "
                    f"server), package {package:5.2f} ms"
                )
    if "inprocess" in parts:
        log(f"in-process: {len(series)} series x {plan.rounds} rounds ...")
        database.settle()
        run.inprocess = interleaved(
            client, series, rounds=plan.rounds, warmup=plan.warmup, tag="inproc"
        )
        _print_table(log, run.inprocess, series)
    if "doors" in parts:
        door_series = [
            Series(bare, CREATE) if mode == CREATE else Series(ours, mode)
            for bare, ours in DOORS
            for mode in (CREATE, FIRST, REPLAY)
        ]
        log(f"doors, in-process: {len(door_series)} series x {plan.rounds} rounds ...")
        database.settle()
        run.doors = interleaved(
            client, door_series, rounds=plan.rounds, warmup=plan.warmup, tag="doors"
        )
        run.doors_series = door_series
        _print_doors(log, run.doors, door_series)
    if "nosync" in parts:
        log(f"in-process, synchronous_commit=off: {len(series)} series x {plan.rounds} rounds ...")
        database.settle()
        database.set_synchronous_commit(False)
        try:
            run.nosync = interleaved(
                client, series, rounds=plan.rounds, warmup=plan.warmup, tag="nosync"
            )
        finally:
            database.set_synchronous_commit(True)
        _print_table(log, run.nosync, series)
    if "profile" in parts:
        for mode in (FIRST, REPLAY):
            log(f"profiling django-idempotency's {mode} ({plan.profile_requests} requests) ...")
            run.profiles.append(
                profiling.profile_mode(client, OURS, mode, plan.profile_requests, OUT_DIR)
            )
    if "http" in parts:
        log(f"HTTP: gunicorn (4 gthread workers), {len(series)} series x {plan.http_rounds} rounds")
        database.settle()
        with server.gunicorn(
            database_url=database_url, workers=4, worker_class="gthread",
            log_path=OUT_DIR / "gunicorn.log",
        ) as base_url:  # fmt: skip
            sender = OverHttp(base_url, token)
            run.http = interleaved(
                sender, series, rounds=plan.http_rounds, warmup=plan.warmup, tag="http"
            )
            sender.close()
        _print_table(log, run.http, series)
    if "storm" in parts:
        log(f"storm: {plan.storm_keys} keys x {plan.storm_copies} copies, 4 sync workers")
        with server.gunicorn(
            database_url=database_url, workers=4, worker_class="sync",
            log_path=OUT_DIR / "gunicorn.log",
        ) as base_url:  # fmt: skip
            for variant in STORMED:
                result = storm.run_storm(
                    base_url, token, variant, keys=plan.storm_keys, copies=plan.storm_copies
                )
                run.storms.append(result)
                log(
                    f"  {variant.label:38} duplicates {result.duplicates:4}  "
                    f"replayed {result.replayed_share:6.1%}  409 {result.statuses[409]:4}  "
                    f"p50 {result.latency.median_ms:7.2f} ms  p99 {result.latency.p99_ms:7.2f} ms  "
                    f"statuses {dict(result.statuses)}"
                )
    if "throughput" in parts:
        log(f"throughput at saturation: {plan.saturation_clients} clients, 4 sync workers")
        with server.gunicorn(
            database_url=database_url, workers=4, worker_class="sync",
            log_path=OUT_DIR / "gunicorn.log",
        ) as base_url:  # fmt: skip
            run.throughput = saturation.saturate(
                base_url, token, (BARE, OURS, BEFORE_24, ONE_STATEMENT, PREVIOUS, SAVEPOINT),
                clients=plan.saturation_clients, seconds=plan.saturation_seconds,
                repeats=plan.saturation_repeats,
            )  # fmt: skip
        for result in run.throughput:
            log(
                f"  {result.variant.label:48} {result.per_second:7.1f} requests/s "
                f"({result.failed} failed)"
            )
    if "growth" in parts:
        log("stored body sizes ...")
        database.settle()
        run.bodies = growth.body_sizes(
            client, [("1 KiB", 1024), ("100 KiB", 100 * 1024)],
            rounds=plan.body_rounds, warmup=plan.warmup // 2,
        )  # fmt: skip
        log("growth with live records ...")
        run.growth = growth.table_growth(
            client, plan.growth_sizes, rounds=plan.growth_rounds, warmup=plan.warmup // 2, log=log
        )
        if 10_000_000 not in plan.growth_sizes:
            run.growth_note = (
                "10 million records: skipped in this run (quick, or `--no-ten-million`); a full "
                "run fills them in about 3 minutes and ~6 GB of disk."
            )
        for row in run.bodies + run.growth:
            log(
                f"  {row.label:>10}: bare {row.create.median_ms:.2f} ms, new key "
                f"{row.first.median_ms:.2f} ms ({row.first.ratio_to(row.create):.2f}x), replay "
                f"{row.replay.median_ms:.2f} ms ({row.replay.ratio_to(row.create):.2f}x)"
            )
    return run


def _print_table(log: Callable[[str], None], results: Results, series_list: list[Series]) -> None:
    from harness.measure import CREATE, Series
    from harness.variants import BARE

    bare = results.summary(Series(BARE, CREATE))
    for series in series_list:
        summary = results.summary(series)
        log(
            f"  {series.variant.label:38} {series.mode:7} median {summary.median_ms:6.2f} ms  "
            f"p99 {summary.p99_ms:6.2f} ms  {summary.ratio_to(bare):5.2f}x"
        )


def _print_doors(log: Callable[[str], None], results: Results, series_list: list[Series]) -> None:
    from harness.report import door_rows

    for series, summary, ratio in door_rows(results, series_list):
        log(
            f"  {series.variant.label:42} {series.mode:7} median {summary.median_ms:6.2f} ms  "
            f"{ratio:5.2f}x of its bare variant"
        )


if __name__ == "__main__":
    if not _in_venv():
        _bootstrap()
    sys.exit(main())
