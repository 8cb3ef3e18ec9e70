"""The processes a soak runs: a private PostgreSQL cluster, PgBouncer, a private RabbitMQ
node, gunicorn instances of the example project, a uvicorn instance for its async doors, a
Celery worker and the purge loop. Each is started on 127.0.0.1 and a free port, and stopped by
its own PID; ``Services.close()`` stops whatever is still running and removes the temporary
directories, and is safe to call twice and from a signal handler's ``finally``;
``Services.leftovers()`` lists what is still there after it (the run fails on any).

The processes themselves are tests/services.py's, shared with the end-to-end tests; this module
keeps what only the soak has (``Services``, the clocks, the broker) and the names the soak
imports from here.

The machine's shared PostgreSQL and RabbitMQ are never touched: the soak restarts only its own
cluster and kills only its own node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from tests.services import (
    READY_TIMEOUT,
    REPO_ROOT,
    STOP_TIMEOUT,
    AppServer,
    AsgiServer,
    Bouncer,
    CeleryWorker,
    Cluster,
    DatabaseServer,
    as_postgres,
    children,
    connect,
    free_port,
    kill_pids,
    manage,
    postgres_bin,
    private_dir,
    project_env,
    stop_process,
    use_ports,
    wait_for_port,
)

from .broker import Broker

__all__ = [
    "READY_TIMEOUT",
    "REPO_ROOT",
    "STOP_TIMEOUT",
    "AppServer",
    "AsgiServer",
    "Bouncer",
    "Broker",
    "CeleryWorker",
    "Clock",
    "Cluster",
    "Database",
    "Postgres",
    "Served",
    "Services",
    "as_postgres",
    "broker_url",
    "children",
    "connect",
    "free_port",
    "kill_pids",
    "manage",
    "postgres_bin",
    "project_env",
    "stop_process",
    "use_ports",
    "wait_for_port",
]


def broker_url(port: int) -> str:
    """The soak's RabbitMQ node (guest, vhost ``/``) on 127.0.0.1:``port`` (its proxy's)."""
    return f"amqp://guest:guest@127.0.0.1:{port}//"


def faketime_lib() -> Path | None:
    """libfaketime (Debian's ``libfaketime``), for the machine's architecture."""
    return next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))), None)


@dataclass
class Clock:
    """A process's wall clock, ``offset`` seconds off, through libfaketime (LD_PRELOAD), set
    when the process starts: a skewed server is a server restarted on a host whose clock is
    off. Its monotonic clock is shifted by as much, which no process compares across
    processes; changing a live process's offset would make that clock jump, which no real
    monotonic clock does (and libfaketime's option to leave it alone breaks ``time.sleep``)."""

    offset: float = 0.0

    def env(self) -> dict[str, str]:
        lib = faketime_lib()
        if lib is None:
            raise RuntimeError("libfaketime is missing (scripts/bootstrap.sh installs it)")
        # File times are left alone: gunicorn's heartbeat stores a monotonic reading in one.
        return {
            "LD_PRELOAD": str(lib),
            "FAKETIME": f"{self.offset:+.0f}",
            "NO_FAKE_STAT": "1",
        }


class Database(Protocol):
    """The soak's database server, as the run and the nemesis use it: a private server of the
    run's own, restarted at will. ``Postgres`` is one; another backend (a MariaDB server) is
    another class with these members, plus its dialect of the checker's queries
    (``doors.Door.effects_sql``, ``run.read_snapshot``)."""

    #: The backend's name in the report, and whether a connection pooler (PgBouncer) exists
    #: for it (the second server goes through it, else straight through its own proxy).
    vendor: str
    pooled: bool
    #: The ``mode`` values ``restart`` takes (the nemesis's ``database-restart-<mode>``).
    restart_modes: tuple[str, ...]
    #: Whether the checker dates business rows by the database's clock (commit timestamps):
    #: only then may the nemesis skew the app servers' clocks.
    clock_safe: bool

    @property
    def port(self) -> int: ...
    @property
    def root(self) -> Path:
        """The server's own directory (removed by ``Services.close``)."""
        ...

    def init(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self, mode: str) -> None: ...
    def url(self, database: str, port: int | None = None) -> str: ...
    def create_database(self, name: str) -> None: ...
    def connect(self, url: str) -> Any:
        """A DB-API connection in autocommit mode (the checker's reads)."""
        ...

    def translate(self, sql: str) -> str:
        """A checker query (written for PostgreSQL) in this backend's words."""
        ...

    def terminate(self, database: str, pick: float, count: int) -> list[int]:
        """End up to ``count`` client sessions on ``database`` (from ``pick`` in [0, 1) of the
        list), as an administrator would; their ids."""
        ...


@dataclass
class Served:
    """The soak's database on one of tests/services.py's servers, whose life cycle is the
    server's: the backends add their dialect and their ``Database`` facts."""

    server: DatabaseServer

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def root(self) -> Path:
        return self.server.root

    def url(self, database: str, port: int | None = None) -> str:
        return self.server.url(database, port)

    def init(self) -> None:
        self.server.init()

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def restart(self, mode: str) -> None:
        """``fast``: sessions ended, open transactions rolled back; ``immediate``: no shutdown
        at all, crash recovery at the next start."""
        self.server.restart(mode)


@dataclass
class Postgres(Served):
    """A private PostgreSQL cluster (tests/services.py's ``Cluster``) as the soak's database;
    commit timestamps on, by which the checker dates business rows (the app servers' clocks
    are skewed)."""

    vendor: str = "PostgreSQL"
    pooled: bool = True
    restart_modes: tuple[str, ...] = ("fast", "immediate")
    clock_safe: bool = True

    @classmethod
    def private(cls, root: Path) -> Postgres:
        return cls(Cluster(root=root, port=free_port(), settings={"track_commit_timestamp": "on"}))

    def connect(self, url: str) -> Any:
        return connect(url)

    def translate(self, sql: str) -> str:
        return sql

    def create_database(self, name: str) -> None:
        with connect(self.server.url()) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def terminate(self, database: str, pick: float, count: int) -> list[int]:
        with connect(self.server.url()) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " ORDER BY pid",
                [database],
            ).fetchall()
            pids = [int(row[0]) for row in rows]
            start = int(pick * len(pids)) if pids else 0
            chosen = (pids[start:] + pids[:start])[:count]
            for pid in chosen:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            return chosen


class Services:
    """Everything the soak started, in one place, so one ``close()`` stops it all."""

    def __init__(self, database: str = "postgresql") -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.root = private_dir("idempotency-soak-")
        self.database: Database
        if database == "mariadb":
            from .mariadb import Mariadb

            self.database = Mariadb.private()
        else:
            self.database = Postgres.private(self.root)
        self.bouncer: Bouncer | None = None
        # The node's own directory: it runs as ``rabbitmq``, which cannot enter ``root``.
        self.broker = Broker(
            root=Path(tempfile.mkdtemp(prefix="idempotency-soak-rabbitmq-")),
            port=free_port(),
            dist_port=free_port(),
            name=f"idempotency-soak-{self.run_id}",
            extra=self.mark(),
        )
        self.apps: list[AppServer] = []
        self.purge: subprocess.Popen[bytes] | None = None
        self.clocks: dict[str, Clock] = {}
        #: The run's Celery queue (on the private node, which goes with it).
        self.queue = f"idempotency-soak-{self.run_id}"
        self._closed = False

    def clock(self, name: str) -> Clock:
        """The clock of the process ``name`` (made on first use, at offset 0)."""
        return self.clocks.setdefault(name, Clock())

    def mark(self) -> dict[str, str]:
        """The environment variable every process of the run carries (``leftovers`` looks)."""
        return {"IDEMPOTENCY_SOAK_RUN": self.run_id}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for app in self.apps:
            with contextlib.suppress(Exception):
                app.stop()
        if self.purge is not None:
            with contextlib.suppress(Exception):
                stop_process(self.purge)
        if self.bouncer is not None:
            with contextlib.suppress(Exception):
                self.bouncer.stop()
        with contextlib.suppress(Exception):
            self.broker.stop()
        self.database.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.database.root, ignore_errors=True)
        shutil.rmtree(self.broker.root, ignore_errors=True)

    def leftovers(self, wait: float = 0.0) -> list[str]:
        """What the run left on the machine: its processes (by their mark, or a command line
        naming its directories), its directories, its node's name in epmd; asked again for up
        to ``wait`` seconds while anything is found (a port program of the killed node notices
        its end a moment later)."""
        deadline = time.monotonic() + wait
        found = self._leftovers()
        while found and time.monotonic() < deadline:
            time.sleep(0.5)
            found = self._leftovers()
        return found

    def _leftovers(self) -> list[str]:
        found: list[str] = []
        roots = tuple({str(self.root), str(self.broker.root), str(self.database.root)})
        for process in psutil.process_iter(["pid", "name", "cmdline", "status"]):
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.info["name"] == "epmd":
                continue  # the machine's name server, which a node starts if none runs
            with contextlib.suppress(psutil.Error):
                command = " ".join(process.info["cmdline"] or [])
                marked = process.environ().get("IDEMPOTENCY_SOAK_RUN") == self.run_id
                if marked or any(root in command for root in roots):
                    found.append(f"process {process.pid} {process.info['name']}: {command[:120]}")
        found += [f"directory {root}" for root in roots if Path(root).exists()]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            names = subprocess.run(
                ["epmd", "-names"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            if self.broker.name in names:
                found.append(f"epmd name {self.broker.name}")
        return found
