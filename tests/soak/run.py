"""Run the soak: start the services, let the clients and the nemesis loose, check everything.

    python -m tests.soak              # 10 minutes, 32 clients
    python -m tests.soak --quick      # 90 seconds
    python -m tests.soak --duration=40m --operations=100000  # until either comes first
    python -m tests.soak --duration=90m --operations=100000 --faults-per-kind=300 --interval=0.4
        # past the operations until every kind of fault came 300 times (or at the duration)
    python -m tests.soak --seed 1234  # replay a run's fault schedule and workload choices
    python -m tests.soak --ports 18900-18999  # every port the run listens on from this range

Exit status 0 when the checker found no violation, 1 when it did, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import http
from .checker import PoisonTask, check, describe
from .doors import DOORS
from .nemesis import Nemesis
from .proxy import FaultProxy
from .report import CpuUse, Run, markdown, summary, write_section
from .services import (
    REPO_ROOT,
    AppServer,
    AsgiServer,
    Bouncer,
    CeleryWorker,
    Services,
    broker_url,
    free_port,
    manage,
    use_ports,
)
from .snapshot import DRAIN_TIMEOUT, drain, read_snapshot
from .workload import POISON_TASK as POISON
from .workload import Client, History, Plan, Poisoner, Principal, Target

OUT = REPO_ROOT / "build" / "soak"
DOCS = REPO_ROOT / "docs" / "reliability.md"
PRINCIPALS = 4
#: Seconds an outbox message waits for its on-commit publish before the relay sends it.
RELAY_AFTER = 3.0
#: Seconds an issued key may start an operation: short, so that retries come after it.
ISSUED_KEY_MAX_AGE = 4.0
#: Deliveries of a task message that may die with their worker before it is stored as failed.
TASK_MAX_DELIVERIES = 5

_USERS = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
users = [get_user_model().objects.create_user("soak%d" % i, password="soak") for i in range({n})]
print(json.dumps([[user.pk, Token.objects.create(user=user).key] for user in users]))
"""

# The purge and the outbox relay, continuously: one process, a pass a second, until stopped or
# the deadline. The relay publishes a ship request's task whose on-commit publish never happened
# (a lost commit acknowledgement, a worker killed right after the commit).
_PURGE = """
import time
from django.db import connection
from django_idempotency.celery.outbox import relay_outbox
from django_idempotency.models import IdempotencyRecord
from example_project.celery import app
deadline = time.monotonic() + {seconds}
while time.monotonic() < deadline:
    try:
        result = IdempotencyRecord.objects.purge_expired(batch_size=500)
        print("purged", result.deleted, result.events_deleted, flush=True)
        relayed = relay_outbox(app=app, older_than={relay_after}).sent
        if relayed:
            print("relayed", relayed, flush=True)
    except Exception as exc:
        print("failed", type(exc).__name__, flush=True)
        connection.close()
    time.sleep(1)
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="90 s instead of 10 minutes")
    parser.add_argument(
        "--duration",
        type=seconds,
        help="how long the load lasts at most: 90, 90s, 40m, 1h (overrides --quick)",
    )
    parser.add_argument(
        "--operations",
        type=int,
        help="stop the load once the clients started this many operations (or at --duration)",
    )
    parser.add_argument(
        "--database",
        choices=("postgresql", "mariadb"),
        default="postgresql",
        help="the private database server the run starts (default postgresql)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, help="replay a run (printed at its start)")
    parser.add_argument("--ttl", type=float, help="IDEMPOTENCY_TTL seconds (45 quick, 60 full)")
    parser.add_argument("--interval", type=float, default=2.0, help="mean seconds between faults")
    parser.add_argument(
        "--issued-key-max-age",
        type=float,
        default=ISSUED_KEY_MAX_AGE,
        help=f"IDEMPOTENCY_ISSUED_KEY_MAX_AGE seconds ({ISSUED_KEY_MAX_AGE:.0f})",
    )
    parser.add_argument(
        "--ports",
        default=os.environ.get("SOAK_PORTS") or os.environ.get("IDEMPOTENCY_TEST_PORTS", ""),
        help=(
            "FIRST-LAST: the ports the run listens on (default $SOAK_PORTS, else "
            "$IDEMPOTENCY_TEST_PORTS, else any free one)"
        ),
    )
    parser.add_argument(
        "--faults-per-kind",
        type=int,
        default=0,
        help=(
            "inject at least this many faults of every kind (drawn evenly until then); the load "
            "goes on past --operations until they are in, or until --duration"
        ),
    )
    parser.add_argument("--write-docs", action="store_true", help="update docs/reliability.md")
    return parser.parse_args(argv)


def seconds(text: str) -> float:
    """``90``, ``90s``, ``40m``, ``1.5h``: a duration in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a duration is 90, 90s, 40m or 1h, not {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a duration must be positive, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    duration = args.duration or (90.0 if args.quick else 600.0)
    ttl = args.ttl or (45.0 if duration <= 120 else 60.0)
    use_ports(args.ports)
    limit = f", up to {args.operations:,} operations" if args.operations else ""
    print(
        f"soak: seed {seed}, {duration:.0f} s{limit}, {args.clients} clients, TTL {ttl:.0f} s",
        flush=True,
    )
    services = Services(args.database)
    try:
        with _terminate_as_interrupt():
            status = asyncio.run(soak(args, seed, duration, ttl, services))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            f"soak: interrupted (seed {seed}); everything it started is being stopped", flush=True
        )
        status = 2
    except Exception:
        traceback.print_exc()
        print(f"soak: the run failed (seed {seed}); everything it started is being stopped")
        status = 2
    finally:
        services.close()
    left = services.leftovers(wait=10)
    if left:
        print("soak: LEFT BEHIND after the run:\n  " + "\n  ".join(left), flush=True)
        return 2
    print("soak: nothing left behind (processes, directories, broker node)", flush=True)
    return status


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI timeouts, ``kill``) ends the run like Ctrl-C, so every ``finally`` runs."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def soak(
    args: argparse.Namespace, seed: int, duration: float, ttl: float, services: Services
) -> int:
    # Inside the loop, a signal cancels the run: every ``finally`` below runs in order.
    loop, run_task = asyncio.get_running_loop(), asyncio.current_task()
    assert run_task is not None
    history: History | None = None

    def stop() -> None:
        if history is not None:
            history.stopping = True
        run_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    setup_started = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs"
    logs.mkdir(exist_ok=True)
    database, node = services.database, services.broker
    await asyncio.to_thread(database.init)
    await asyncio.to_thread(database.start)
    await asyncio.to_thread(node.init)
    await asyncio.to_thread(node.start)
    await asyncio.to_thread(database.create_database, "shop")
    direct = database.url("shop")
    await asyncio.to_thread(manage, direct, "migrate", "--noinput")
    users = json.loads(
        (await asyncio.to_thread(manage, direct, "shell", "-c", _USERS.format(n=PRINCIPALS)))
        .strip()
        .splitlines()[-1]
    )
    principals = [
        Principal(user_id=int(pk), token=str(token), username=f"soak{i}")
        for i, (pk, token) in enumerate(users)
    ]

    # The second server goes through the backend's connection pooler, if it has one.
    pooled = database.port
    if database.pooled:
        bouncer = services.bouncer = Bouncer(
            root=services.root, port=free_port(), upstream_port=database.port
        )
        await asyncio.to_thread(bouncer.start)
        pooled = bouncer.port
    proxies = [
        FaultProxy("127.0.0.1", database.port, seed=seed),
        FaultProxy("127.0.0.1", pooled, seed=seed + 1),
    ]
    # The soak's own RabbitMQ node, behind two proxies: one for what publishes (the servers'
    # on-commit sends, the relay), which the nemesis resets and cuts right after a publish, one
    # for the worker, which it resets; the nemesis also SIGKILLs the node itself.
    broker = FaultProxy("127.0.0.1", node.port, seed=seed + 2)
    consumer = FaultProxy("127.0.0.1", node.port, seed=seed + 3)
    try:
        for proxy in (*proxies, broker, consumer):
            await proxy.start(free_port())
        env = {
            "IDEMPOTENCY_TTL": str(ttl),
            "IDEMPOTENCY_ISSUED_KEY_MAX_AGE": str(args.issued_key_max_age),
            "IDEMPOTENCY_TASK_MAX_DELIVERIES": str(TASK_MAX_DELIVERIES),
            "CELERY_BROKER_URL": broker_url(broker.port),
            "EXAMPLE_CELERY_QUEUE": services.queue,
            **services.mark(),
        }

        def clocked(name: str) -> dict[str, str]:
            # Each process's wall clock is its own (the nemesis restarts it skewed): libfaketime.
            return {**env, **services.clock(name).env()}

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        services.apps = [
            AppServer(
                "direct",
                free_port(),
                database.url("shop", proxies[0].port),
                logs / f"{stamp}-direct.log",
                clocked("direct"),
            ),
            AppServer(
                "pgbouncer",
                free_port(),
                database.url("shop", proxies[1].port),
                logs / f"{stamp}-pgbouncer.log",
                clocked("pgbouncer"),
            ),
            # The async doors, through PgBouncer (async views run in per-request threads).
            AsgiServer(
                "uvicorn",
                free_port(),
                database.url("shop", proxies[1].port),
                logs / f"{stamp}-uvicorn.log",
                clocked("uvicorn"),
                workers=2,
            ),
            # shop.ship_order, enqueued by POST /api/orders/{id}/ship/ (the "ship" door), and
            # the poison task the run sends now and then (tests/soak/poison.py).
            CeleryWorker(
                "celery",
                0,
                database.url("shop", proxies[0].port),
                logs / f"{stamp}-celery.log",
                {**clocked("celery"), "CELERY_BROKER_URL": broker_url(consumer.port)},
                workers=2,
                options=("--include", "tests.soak.poison"),
            ),
        ]
        for app in services.apps:
            app.start()
        await asyncio.gather(*(wait_ready(app) for app in services.apps))
        purge_log = logs / f"{stamp}-purge.log"
        with purge_log.open("wb") as out:
            services.purge = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "shell",
                    "-c",
                    # A deadline only for a run that dies without its ``finally``: the run stops
                    # it after the drain, which the nemesis's settling (up to 180 s) precedes.
                    _PURGE.format(seconds=duration + DRAIN_TIMEOUT + 900, relay_after=RELAY_AFTER),
                ],
                cwd=REPO_ROOT,
                env=_env(database.url("shop", proxies[0].port), env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        setup_seconds = time.monotonic() - setup_started
        print(f"soak: services up in {setup_seconds:.0f} s; load for {duration:.0f} s", flush=True)

        history = History(time.monotonic(), max_ops=args.operations)
        cpu_at_start = CpuUse.now()
        targets = [
            Target(app.name, app.port, app.serves)
            for app in services.apps
            if not isinstance(app, CeleryWorker)
        ]
        plan = Plan(clients=args.clients, issued_key_max_age=args.issued_key_max_age)
        clients = [
            Client(i, principals[i % len(principals)], targets, history, plan, seed)
            for i in range(args.clients)
        ]
        poisoner = Poisoner(history, node.url, services.queue, POISON, seed)
        nemesis = Nemesis(
            seed=seed,
            services=services,
            proxies=proxies,
            broker=broker,
            consumer=consumer,
            now=history.now,
            wait_ready=wait_ready,
            interval=args.interval,
            stopping=lambda: history is not None and (history.stopping or history.full),
            quota=args.faults_per_kind,
        )
        history.more_faults = lambda: bool(nemesis.below_quota())
        progress = asyncio.create_task(_progress(history, nemesis, duration))
        await asyncio.gather(
            nemesis.run(until=duration),
            poisoner.run(until=duration),
            *(client.run(until=duration) for client in clients),
        )
        progress.cancel()
        if history.stopping:
            raise asyncio.CancelledError
        ran_for = history.now()
        cpu = CpuUse.now() - cpu_at_start
        await nemesis.settle()
        drained = await drain(history, database, direct)
        print(f"soak: the tasks of acknowledged operations ran within {drained:.0f} s", flush=True)
    finally:
        for proxy in (*proxies, broker, consumer):
            await proxy.close()

    # Everything stops before the database is read: no request may still be running.
    if services.purge is not None:
        services.purge.terminate()
        services.purge.wait(timeout=30)
    for app in services.apps:
        await asyncio.to_thread(app.stop)
    snapshot = await asyncio.to_thread(read_snapshot, database, direct)
    poison = [PoisonTask(sent.task_id, f"celery:{POISON}") for sent in history.poison]
    verdict = check(
        history.ops, snapshot, DOORS, ttl, max_age=args.issued_key_max_age, poison=poison
    )
    history.dump(OUT / f"history-{seed}.jsonl")
    with (OUT / f"faults-{seed}.jsonl").open("w", encoding="utf-8") as out:
        for fault in nemesis.faults:
            out.write(json.dumps(dataclasses.asdict(fault)) + "\n")
    run = Run(
        seed=seed,
        commit=_commit(),
        started_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        duration=ran_for,
        clients=args.clients,
        ttl=ttl,
        cpus=os.cpu_count() or 0,
        ops=history.ops,
        faults=[fault for fault in nemesis.faults if fault.applied],
        skipped=nemesis.skipped,
        verdict=verdict,
        purged=_purged(purge_log),
        relayed=_relayed(purge_log),
        setup_seconds=setup_seconds,
        drained=drained,
        cpu_busy=cpu.busy_share,
        harness_cpu=cpu.harness_share,
        issued_key_max_age=args.issued_key_max_age,
        operations_limit=args.operations,
        fault_quota=args.faults_per_kind,
        fault_kinds=nemesis.applicable(),
        interval=args.interval,
        planned=duration,
        database=database.vendor,
        pooled=database.pooled,
        clock_skew=database.clock_safe,
    )
    facts = summary(run)
    (OUT / "summary.json").write_text(json.dumps(facts, indent=2, default=str))
    section = markdown(run)
    (OUT / f"report-{seed}.md").write_text(section)
    print(describe(verdict, history.ops))
    print(f"soak: faults {facts['faults_by_kind']}; skipped {dict(nemesis.skipped)}")
    print(f"soak: the outbox relay published {run.relayed:,} task messages")
    if nemesis.errors:
        print("soak: faults that failed to apply:\n  " + "\n  ".join(nemesis.errors[:20]))
    print(
        f"soak: {facts['operations']:,} operations, {facts['attempts']:,} requests, "
        f"{facts['faults']} faults in {ran_for:.0f} s ({facts['ops_per_second']:.0f} ops/s; "
        f"{facts['calm_ops_per_second']:.0f} ops/s without faults); seed {seed}; "
        f"history in {OUT / f'history-{seed}.jsonl'}"
    )
    if args.write_docs:
        write_section(DOCS, section, run.database)
        print(f"soak: wrote its section of {DOCS}")
    short = nemesis.short()
    if short:
        print(f"soak: FAULT QUOTA NOT MET ({args.faults_per_kind} of every kind); short: {short}")
        return 2
    return 0 if verdict.ok else 1


async def wait_ready(app: AppServer, timeout: float = 120.0) -> None:
    """Until a worker answers (any status: it has imported the project), or for the Celery
    worker, until it logged that it consumes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not app.alive():
            raise RuntimeError(f"server {app.name} exited; see {app.log_path}")
        if isinstance(app, CeleryWorker):
            if app.ready():
                return
            await asyncio.sleep(0.2)
            continue
        try:
            await http.request(app.port, "GET", "/admin/login/", headers={}, timeout=5)
            return
        except http.NoAnswer:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server {app.name} did not answer within {timeout}s")


async def _progress(history: History, nemesis: Nemesis, duration: float) -> None:
    while True:
        await asyncio.sleep(15)
        print(
            f"soak: {history.now():5.0f}/{duration:.0f} s, {len(history.ops):,} operations, "
            f"{len(nemesis.faults)} faults",
            flush=True,
        )


def _env(database_url: str, extra: dict[str, str]) -> dict[str, str]:
    from .services import project_env

    return project_env(database_url, **extra)


def _purged(log: Path) -> int:
    return _total(log, "purged", fields=3)


def _relayed(log: Path) -> int:
    return _total(log, "relayed", fields=2)


def _total(log: Path, what: str, *, fields: int) -> int:
    """The sum of the numbers the purge loop printed on its ``what`` lines."""
    total = 0
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == fields and parts[0] == what:
            total += int(parts[1])
    return total


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
