"""The processes a soak runs: a private PostgreSQL cluster, PgBouncer, gunicorn instances of
the example project, a uvicorn instance for its async doors, a Celery worker on a RabbitMQ
queue of the run's own and the purge loop. Each is
started on 127.0.0.1 and a free port, and stopped by its own PID; ``Services.close()`` stops
whatever is still running and removes the temporary directory, and is safe to call twice and
from a signal handler's ``finally``.

The machine's shared PostgreSQL is never touched: the soak restarts only its own cluster. The
machine's RabbitMQ is shared too: the soak only declares, drains and deletes its own queue.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from kombu import Connection

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
AMQP_URL = os.environ.get("CELERY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def broker_address() -> tuple[str, int]:
    """RabbitMQ's host and port (what the broker's fault proxy forwards to)."""
    parts = urlsplit(AMQP_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def broker_url(port: int) -> str:
    """``AMQP_URL`` through a proxy on 127.0.0.1:``port``: same credentials and vhost."""
    parts = urlsplit(AMQP_URL)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


#: Where ``free_port`` looks: ``None`` lets the kernel pick an ephemeral port; a range
#: (``--ports`` or ``SOAK_PORTS=FIRST-LAST``) keeps a run inside ports reserved for it, so runs
#: side by side on one machine never take each other's ports.
_port_range: range | None = None
_next_ports: Iterator[int] = iter(())


def use_ports(spec: str | None) -> None:
    """Take ``free_port``'s ports from ``FIRST-LAST`` (inclusive); ``None`` or ``""``: any."""
    global _port_range, _next_ports
    if not spec:
        _port_range, _next_ports = None, iter(())
        return
    first, _, last = spec.partition("-")
    if not (first.isdigit() and last.isdigit()) or not 1024 <= int(first) <= int(last) < 65536:
        raise ValueError(f"a port range is FIRST-LAST, e.g. 18900-18999, not {spec!r}")
    _port_range = range(int(first), int(last) + 1)
    _next_ports = iter(_port_range)


def free_port() -> int:
    """A port nothing listens on: the next free one of the range, else the kernel's pick."""
    if _port_range is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for port in _next_ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port left in {_port_range.start}-{_port_range.stop - 1}")


def as_postgres() -> dict[str, Any]:
    """PostgreSQL and PgBouncer refuse to run as root: start them as ``postgres`` directly
    (no wrapper process, so the PID held is theirs)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def children(pid: int) -> list[int]:
    """PIDs of the live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal the process by its PID, SIGKILL it if it does not go, and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def postgres_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3])
    )
    if not found:
        raise RuntimeError("the soak needs the PostgreSQL server binaries (postgresql package)")
    return Path(found[-1]).parent


@dataclass
class Cluster:
    """A throw-away PostgreSQL cluster of the soak's own, restarted at will."""

    root: Path
    port: int
    bin_dir: Path = field(default_factory=postgres_bin)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{port or self.port}/{database}"

    def init(self) -> None:
        subprocess.run(
            [
                *(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-A", "trust"),
                *("-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"),
            ],
            capture_output=True,
            check=True,
            timeout=120,
            **as_postgres(),
        )

    def ctl(self, *args: str) -> None:
        result = subprocess.run(
            [
                *(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)),
                *("-l", str(self.root / "server.log"), "-w", "-t", "90", *args),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **as_postgres(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200"
        )
        self.ctl("-o", options, "start")

    def restart(self, mode: str) -> None:
        """``fast``: sessions terminated, open transactions rolled back; ``immediate``: no
        shutdown at all, crash recovery at the next start."""
        self.ctl("-m", mode, "restart")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctl("-m", "immediate", "stop")


@dataclass
class Bouncer:
    """PgBouncer in transaction-pooling mode in front of the cluster."""

    root: Path
    port: int
    upstream_port: int
    pool_size: int = 3
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        config = self.root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream_port} user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\nadmin_users = postgres\npool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 500\nserver_connect_timeout = 5\nserver_login_retry = 1\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(config, "postgres", "postgres")
        self.process = subprocess.Popen(
            [binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            **as_postgres(),
        )
        wait_for_port(self.port, lambda: self.process is not None and self.process.poll() is None)

    def kill(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def wait_for_port(port: int, alive: Any, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process for port {port} exited while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "IDEMPOTENCY_"))
    }
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def manage(database_url: str, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=project_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def _no_control_socket() -> list[str]:
    # gunicorn 27 opens a control socket at one fixed path in $HOME by default.
    return ["--no-control-socket"] if int(version("gunicorn").split(".")[0]) >= 27 else []


@dataclass
class AppServer:
    """One gunicorn master and its sync workers, always on the same port across restarts."""

    name: str
    port: int
    database_url: str
    log_path: Path
    env: dict[str, str]
    workers: int = 4
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    #: What it serves: ``wsgi`` (every door but the async ones) or ``asgi``.
    serves = "wsgi"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "gunicorn", "example_project.wsgi:application"),
            *(f"--workers={self.workers}", "--worker-class=sync"),
            *(f"--bind=127.0.0.1:{self.port}", "--timeout=30", "--graceful-timeout=5"),
            *("--backlog=512", *_no_control_socket()),
        ]

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=project_env(self.database_url, **self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.alive() and self.process else []

    def kill(self) -> None:
        """SIGKILL the master and its workers, by PID (workers hold the listening socket)."""
        if self.process is None:
            return
        workers = self.worker_pids()
        kill_pids([self.process.pid, *workers])
        self.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            workers = self.worker_pids()
            stop_process(self.process)
            kill_pids([pid for pid in workers if Path(f"/proc/{pid}").exists()])


class AsgiServer(AppServer):
    """uvicorn's supervisor and its worker processes (each an event loop), for the async doors;
    the supervisor replaces a killed worker as gunicorn's master does."""

    serves = "asgi"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "example_project.asgi:application"),
            *("--host=127.0.0.1", f"--port={self.port}", f"--workers={self.workers}"),
            *("--backlog=512", "--no-access-log", "--timeout-graceful-shutdown=5"),
        ]


class CeleryWorker(AppServer):
    """A ``celery worker`` of the example project with a prefork pool on the run's own queue:
    killing a pool process or the whole worker leaves its task unacknowledged, and RabbitMQ
    delivers it again (``acks_late``, ``reject_on_worker_lost``). It listens on no port."""

    serves = "celery"

    def command(self) -> list[str]:
        queue = self.env["EXAMPLE_CELERY_QUEUE"]
        return [
            *(sys.executable, "-m", "celery", "-A", "example_project.celery:app", "worker"),
            *("--pool=prefork", f"--concurrency={self.workers}", "--loglevel=INFO"),
            *("-Q", queue, "-n", f"{self.name}-{queue}@localhost"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]

    _log_offset: int = 0

    def start(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()

    def ready(self) -> bool:
        """Whether this start of the worker logged "ready." (it then consumes its queue)."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b" ready." in log.read()


def delete_queue(name: str) -> None:
    """Remove the run's queue (and whatever it still holds) from the shared RabbitMQ, and the
    durable direct exchange of the same name that Celery declares for its default queue."""
    with Connection(AMQP_URL, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(name)
        connection.default_channel.exchange_delete(name)


class Services:
    """Everything the soak started, in one place, so one ``close()`` stops it all."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="idempotency-soak-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.cluster = Cluster(root=self.root, port=free_port())
        self.bouncer: Bouncer | None = None
        self.apps: list[AppServer] = []
        self.purge: subprocess.Popen[bytes] | None = None
        #: The run's RabbitMQ queue, deleted on close.
        self.queue = f"idempotency-soak-{os.getpid()}-{self.root.name.rsplit('-', 1)[-1]}"
        self._closed = False

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
            delete_queue(self.queue)
        self.cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)
