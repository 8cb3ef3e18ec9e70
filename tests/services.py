"""The processes the end-to-end tests (tests/e2e/) and the soak (tests/soak/) start: a private
PostgreSQL cluster or MariaDB server, PgBouncer, the example project under gunicorn or uvicorn, and
Celery workers.

Each runs on 127.0.0.1 and a port of its own (``free_port``), is known to be ready by what it
does (it accepts connections, answers HTTP, logs that it consumes) rather than by a pause, and is
stopped by its own PID with its process group (mirakuru starts it in a session of its own and
finds what it left behind; psutil reads the process tree). The machine's shared PostgreSQL is
never restarted and its shared RabbitMQ only ever loses the queues a run declared itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from mirakuru import HTTPExecutor, SimpleExecutor, TCPExecutor
from mirakuru.base import ENV_UUID, Executor
from mirakuru.exceptions import TimeoutExpired

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Generous: on a loaded CI machine a worker needs seconds to import Django.
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0
#: The machine's RabbitMQ (``scripts/bootstrap.sh`` starts it).
AMQP_URL = os.environ.get("CELERY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


# -- ports -------------------------------------------------------------------------------------

#: Ports handed out, each still bound by the socket that found it (see ``free_port``).
_held: dict[int, socket.socket] = {}
_port_range: range | None = None
_next_ports: Iterator[int] = iter(())


def use_ports(spec: str | None) -> None:
    """Take ``free_port``'s ports from ``FIRST-LAST`` (inclusive), so that runs side by side on
    one machine never take each other's ports; ``None`` or ``""``: any port the kernel picks."""
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
    """A port on 127.0.0.1 that nothing else is handed while this process holds it.

    Not bind-then-close, which races: the port stays bound here, never listening. It is bound
    without ``SO_REUSEADDR`` (so a port any other socket holds is passed over), then the option is
    set, so the server started on it, which sets it too (PostgreSQL, PgBouncer, gunicorn,
    uvicorn, asyncio), can still bind and listen while the kernel hands the port to nobody else.
    From the range of ``use_ports`` (or ``$IDEMPOTENCY_TEST_PORTS``) if one is set, else the
    kernel's pick.
    """
    candidates: Iterator[int] = _next_ports if _port_range is not None else repeat(0)
    for port in candidates:
        if port in _held:
            continue
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        found = int(sock.getsockname()[1])
        _held[found] = sock
        return found
    assert _port_range is not None
    raise RuntimeError(f"no free port left in {_port_range.start}-{_port_range.stop - 1}")


def release_ports() -> None:
    """Close the sockets that hold the ports handed out (at the end of a test session)."""
    while _held:
        _held.popitem()[1].close()


use_ports(os.environ.get("IDEMPOTENCY_TEST_PORTS"))


# -- processes ---------------------------------------------------------------------------------


def as_postgres() -> dict[str, Any]:
    """PostgreSQL and PgBouncer refuse to run as root: as root, start them as ``postgres``
    (directly, no wrapper process, so the PID held is theirs)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def private_dir(prefix: str, owner: str = "postgres") -> Path:
    """A temporary directory the servers that run as ``owner`` (``postgres``, ``mysql``) may
    write to (pytest's ``tmp_path`` is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, owner, owner)
    return path


def children(pid: int) -> list[int]:
    """PIDs of the live (not zombie) processes whose parent is ``pid``."""
    try:
        found = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    alive = []
    for child in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child.pid)
    return sorted(alive)


def pid_with_local_port(port: int, candidates: list[int]) -> int | None:
    """Which of ``candidates`` owns the TCP socket bound locally to ``port``."""
    for pid in candidates:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if any(c.laddr and c.laddr.port == port for c in psutil.Process(pid).net_connections()):
                return pid
    return None


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT
) -> None:
    """Signal the process by its PID, SIGKILL it if it does not go within ``timeout``, and reap
    it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


def wait_for_port(port: int, alive: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
    """Until something accepts connections on ``port``; an error if ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process for port {port} exited while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)  # a poll's pace, not an order between events
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def project_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a process of the example project on ``database_url``: the test run's
    own Django and package settings are not passed on."""
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
    """``manage.py`` of the example project on ``database_url``; its output."""
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


def with_database(url: str, name: str) -> str:
    """``url`` with another database name."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


# -- a private database server -----------------------------------------------------------------


@dataclass
class DatabaseServer:
    """A throw-away database server of the run's own, its data directory and log in ``root``, on
    a port of its own: ``init()`` once, then ``start()``, ``restart(mode)`` (``fast``: a clean
    shutdown; ``immediate``: none, crash recovery at the next start) and ``stop()`` at will."""

    root: Path
    port: int

    #: ``scheme://user`` of its URLs, and the database they name unless told another.
    address: ClassVar[str]
    default_database: ClassVar[str]

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str | None = None, port: int | None = None) -> str:
        name = self.default_database if database is None else database
        return f"{self.address}@127.0.0.1:{port or self.port}/{name}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def init(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def restart(self, mode: str = "fast") -> None:
        raise NotImplementedError

    def running(self) -> bool:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


# -- a private PostgreSQL cluster ----------------------------------------------------------------


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's ``bin`` directory (initdb, pg_ctl)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError(
            "the PostgreSQL server binaries are missing (scripts/bootstrap.sh installs them)"
        )
    return found[-1].parent


@dataclass
class Cluster(DatabaseServer):
    """A throw-away PostgreSQL cluster in ``root``, on a port of its own, restarted at will.

    pg_ctl rather than pytest-postgresql's executor: that one runs initdb and the server as the
    current user, and PostgreSQL refuses to run as root, which tests here and CI are.
    """

    max_connections: int = 200
    bin_dir: Path = field(default_factory=postgres_bin)
    #: More server settings (``-c name=value``).
    settings: dict[str, str] = field(default_factory=dict)

    address: ClassVar[str] = "postgres://postgres"
    default_database: ClassVar[str] = "postgres"

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
        """``pg_ctl`` with ``-w``: it returns once the server accepts connections (or is gone)."""
        result = subprocess.run(
            [
                *(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)),
                *("-l", str(self.log_path), "-w", "-t", str(int(READY_TIMEOUT)), *args),
            ],
            capture_output=True,
            text=True,
            timeout=READY_TIMEOUT + 30,
            check=False,
            **as_postgres(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={self.max_connections}"
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self.ctl("-o", options, "start")

    def restart(self, mode: str = "fast") -> None:
        """``fast``: sessions terminated, open transactions rolled back; ``immediate``: no
        shutdown at all, crash recovery at the next start."""
        self.ctl("-m", mode, "restart")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def stop(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.ctl("-m", "immediate", "stop")


# -- a private MariaDB server ------------------------------------------------------------------

#: A clean shutdown flushes InnoDB's dirty pages: under a soak's load that takes a while.
SHUTDOWN_TIMEOUT = 60.0


def as_mysql() -> dict[str, Any]:
    """MariaDB runs as root only when told to: as root, start it as ``mysql``."""
    if os.geteuid() != 0:
        return {}
    return {"user": "mysql", "group": "mysql", "extra_groups": []}


@dataclass
class MariaDBServer(DatabaseServer):
    """A throw-away MariaDB server (``mariadbd``, no wrapper process, so the PID held is the
    server's) with its data directory, socket and log in ``root``, on a port of its own,
    stopped, killed and started again at will on the same port. Root over TCP, no password."""

    #: More server options (the benchmark's: performance_schema on).
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    address: ClassVar[str] = "mysql://root"
    default_database: ClassVar[str] = ""

    def _options(self) -> list[str]:
        # A small redo log and buffer pool: the tests' databases are tiny.
        return [
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--innodb-log-file-size=16M",
            "--innodb-buffer-pool-size=64M",
        ]

    def init(self) -> None:
        """The system tables, with root@127.0.0.1 allowed in without a password."""
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            raise RuntimeError("MariaDB is not installed (scripts/bootstrap.sh installs it)")
        subprocess.run(
            [
                installer,
                *self._options(),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            check=True,
            timeout=120,
            **as_mysql(),
        )

    def start(self) -> None:
        """Start it and wait until it answers a query (after crash recovery, if killed)."""
        binary = shutil.which("mariadbd", path="/usr/sbin:/usr/bin") or "/usr/sbin/mysqld"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(binary, *self._options()),
                    *(f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve"),
                    *(f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'pid'}"),
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_general_ci",
                    "--max-connections=300",
                    *self.options,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Out of the caller's process group: a Ctrl-C at the terminal is not its.
                start_new_session=True,
                **as_mysql(),
            )
        wait_for_port(self.port, self.running)
        self._wait_for_queries()

    def _wait_for_queries(self) -> None:
        from tests.databases import session

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                with session(self.url()) as probe:
                    probe.execute("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline or not self.running():
                    raise
            time.sleep(0.05)  # a poll's pace

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def restart(self, mode: str = "fast") -> None:
        """``fast``: a shutdown (sessions ended, open transactions rolled back); ``immediate``:
        SIGKILL, no shutdown at all, InnoDB's crash recovery at the next start."""
        if self.process is not None:
            if mode == "immediate":
                stop_process(self.process, signal.SIGKILL)
            else:
                stop_process(self.process, signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, signal.SIGKILL)


# -- PgBouncer ---------------------------------------------------------------------------------


@dataclass
class Bouncer:
    """PgBouncer in transaction-pooling mode, in ``root``, in front of the PostgreSQL server on
    ``upstream_port``, with ``pool_size`` server connections per database."""

    root: Path
    port: int
    upstream_port: int
    pool_size: int = 3
    upstream_host: str = "127.0.0.1"
    user: str = "postgres"
    password: str | None = None
    executor: TCPExecutor | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "pgbouncer.log"

    def url_for(self, database_url: str) -> str:
        """The same database, reached through PgBouncer."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}"))

    def show(self, what: str, database: str) -> list[dict[str, Any]]:
        """Rows of the admin console's ``SHOW <what>`` about ``database``."""
        url = f"postgres://{self.user}@127.0.0.1:{self.port}/pgbouncer"
        # The console speaks only the simple query protocol: a client-side-binding cursor.
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [row for row in rows if row.get("database") == database]

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer is not installed (scripts/bootstrap.sh installs it)")
        login = f"user={self.user}" + (f" password={self.password}" if self.password else "")
        config = self.root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={self.upstream_host} port={self.upstream_port} {login}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = any\nadmin_users = {self.user}\npool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nmin_pool_size = 0\nreserve_pool_size = 0\n"
            "max_client_conn = 500\nserver_connect_timeout = 5\nserver_login_retry = 1\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.log_path}\n"
        )
        if os.geteuid() == 0:
            shutil.chown(config, "postgres", "postgres")
        self.executor = TCPExecutor(
            [binary, str(config)],
            host="127.0.0.1",
            port=self.port,
            timeout=READY_TIMEOUT,
            sleep=0.05,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            popen_kwargs=as_postgres(),
        )
        self.executor.start()

    def kill(self) -> None:
        if self.executor is not None:
            self.executor.kill()

    def stop(self) -> None:
        if self.executor is not None:
            _stop(self.executor)


# -- servers and workers of the example project -----------------------------------------------


def _no_control_socket() -> list[str]:
    # gunicorn 27 opens a control socket at one fixed path in $HOME by default: two servers at
    # once (another test run on the same machine) would fight over it.
    return ["--no-control-socket"] if int(version("gunicorn").split(".")[0]) >= 27 else []


def _stop(executor: SimpleExecutor, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the main process only (gunicorn's master stops its workers, Celery finishes its
    task), SIGKILL its process group if it does not go, and whatever it left behind."""
    process = executor.process
    if process is not None and process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    executor.kill()


class _OwnEnvironment(SimpleExecutor):
    """mirakuru adds ``os.environ`` to the environment it is given; these processes get only
    theirs (``project_env`` leaves out the test run's own Django and package settings), plus
    mirakuru's mark by which it finds what a process left behind."""

    @property
    def envvars(self) -> dict[str, str]:
        return {**self._envvars, ENV_UUID: self._uuid}


class _Http(_OwnEnvironment, HTTPExecutor):
    """Ready once it answers HTTP."""


class _Ready(_OwnEnvironment, Executor):
    """Ready once a test of the server's own says so (``AppServer.ready``)."""

    def __init__(self, server: AppServer, **kwargs: Any) -> None:
        super().__init__(server.command(), **kwargs)
        self.server = server

    def pre_start_check(self) -> bool:
        return False

    def after_start_check(self) -> bool:
        return self.server.ready()


@dataclass
class AppServer:
    """One gunicorn master and its sync workers, on the same port across restarts.

    ``start()`` returns at once (the soak starts several and waits for them together);
    ``run()`` starts and waits until it answers; ``kill()`` SIGKILLs its whole process group.
    """

    name: str
    port: int
    database_url: str
    log_path: Path
    env: dict[str, str]
    workers: int = 4
    #: A listen queue deep enough for every request a test fires at once.
    backlog: int = 512
    restarts: int = 0
    executor: SimpleExecutor | None = field(default=None, init=False, repr=False)
    #: The process of the latest start (mirakuru forgets it once stopped; a test may not).
    _process: subprocess.Popen[Any] | None = field(default=None, init=False, repr=False)
    #: Where the latest start's lines begin in the log, which restarts append to.
    _log_offset: int = field(default=0, init=False, repr=False)

    #: What it serves: ``wsgi`` (every door but the async ones), ``asgi`` or ``celery``.
    serves: ClassVar[str] = "wsgi"
    #: A page any worker answers once it has imported the project.
    probe_path: ClassVar[str] = "/admin/login/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[Any] | None:
        return self._process

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "gunicorn", "example_project.wsgi:application"),
            *(f"--workers={self.workers}", "--worker-class=sync"),
            *(f"--bind=127.0.0.1:{self.port}", "--timeout=30", "--graceful-timeout=5"),
            *(f"--backlog={self.backlog}", *_no_control_socket()),
        ]

    def _executor(self, **kwargs: Any) -> SimpleExecutor:
        return _Http(
            self.command(),
            url=f"{self.url}{self.probe_path}",
            method="GET",
            status=r"^[23]\d\d$",
            **kwargs,
        )

    def start(self) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.executor = self._executor(
                cwd=str(REPO_ROOT),
                envvars=project_env(self.database_url, **self.env),
                timeout=READY_TIMEOUT,
                sleep=0.1,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            # Spawned only: readiness is waited for by ``wait_ready`` (or the soak's own probe).
            SimpleExecutor.start(self.executor)
        self._process = self.executor.process

    def ready(self) -> bool:
        """Whether it answers now."""
        assert isinstance(self.executor, Executor)
        return self.executor.after_start_check()

    def wait_ready(self) -> None:
        """Until it answers; an error with its log if it exits or never does."""
        executor = self.executor
        assert isinstance(executor, Executor)
        executor._set_timeout()
        try:
            executor.wait_for(executor.check_subprocess)
        except Exception as error:
            raise RuntimeError(f"{self.name} did not start:\n{self.log()}") from error

    def run(self) -> AppServer:
        self.start()
        self.wait_ready()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def worker_pids(self) -> list[int]:
        process = self.process
        return children(process.pid) if process is not None and self.alive() else []

    def kill(self) -> None:
        """SIGKILL the master and its workers at once, and wait until the workers are gone: they
        hold the listening socket the next start binds again."""
        if self.executor is None:
            return
        workers = []
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                workers.append(psutil.Process(pid))
        self.executor.kill(sig=signal.SIGKILL)
        psutil.wait_procs(workers, timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        if self.executor is not None:
            with contextlib.suppress(TimeoutExpired):
                _stop(self.executor)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class AsgiServer(AppServer):
    """uvicorn's supervisor and its worker processes (each an event loop), for the async doors;
    the supervisor replaces a killed worker as gunicorn's master does."""

    serves: ClassVar[str] = "asgi"

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "example_project.asgi:application"),
            *("--host=127.0.0.1", f"--port={self.port}", f"--workers={self.workers}"),
            *(f"--backlog={self.backlog}", "--no-access-log", "--timeout-graceful-shutdown=5"),
        ]


@dataclass
class CeleryWorker(AppServer):
    """A ``celery worker`` on one queue (``env["EXAMPLE_CELERY_QUEUE"]`` unless ``queue`` says),
    ready once this start of it logged "ready.". It listens on no port.

    With the prefork pool, killing a pool process or the whole worker leaves its task
    unacknowledged, and RabbitMQ delivers it again (``acks_late``, ``reject_on_worker_lost``);
    with ``pool="solo"`` the task runs in the worker's own process.
    """

    serves: ClassVar[str] = "celery"
    app: str = "example_project.celery:app"
    queue: str = ""
    pool: str = "prefork"
    options: tuple[str, ...] = ()

    @property
    def hostname(self) -> str:
        return f"{self.name}-{self.queue or self.env['EXAMPLE_CELERY_QUEUE']}@localhost"

    def command(self) -> list[str]:
        concurrency = [f"--concurrency={self.workers}"] if self.pool == "prefork" else []
        return [
            *(sys.executable, "-m", "celery", "-A", self.app, "worker"),
            *(f"--pool={self.pool}", *concurrency, *self.options, "--loglevel=INFO"),
            *("-Q", self.queue or self.env["EXAMPLE_CELERY_QUEUE"], "-n", self.hostname),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]

    def _executor(self, **kwargs: Any) -> SimpleExecutor:
        return _Ready(self, **kwargs)

    def ready(self) -> bool:
        """Whether this start of the worker logged "ready." (it then consumes its queue)."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return b" ready." in log.read()

    def stop(self) -> None:
        # A warm shutdown lets the task at hand finish: give it the time a task may take.
        if self.executor is not None:
            with contextlib.suppress(TimeoutExpired):
                _stop(self.executor, timeout=30)


def delete_queue(name: str) -> None:
    """Remove a queue of the run's own (and whatever it still holds) from the shared RabbitMQ,
    and the durable direct exchange of the same name Celery declares for its default queue."""
    from kombu import Connection

    with Connection(AMQP_URL, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(name)
        connection.default_channel.exchange_delete(name)
