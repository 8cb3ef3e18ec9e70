"""Fixtures of the fault tests: several gunicorn instances at once, a private PostgreSQL cluster
that may be restarted, and PgBouncer in transaction-pooling mode. Everything is started by the
test on 127.0.0.1 and free ports, and stopped by PID afterwards.

The machine's shared PostgreSQL is never restarted: the restart test gets a cluster of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.e2e.conftest import _CREATE_USER, E2E_USERNAME, _free_port, _manage

from .harness import Instance, start_instance

READY_TIMEOUT = 60.0

Launch = Callable[..., Instance]


@pytest.fixture
def e2e_token(e2e_template: tuple[str, str]) -> str:
    return e2e_template[1]


@pytest.fixture
def launch(e2e_token: str, tmp_path: Path) -> Iterator[Launch]:
    """``launch(database_url, name=..., delay_ms=..., token=...)`` starts one more gunicorn
    instance (4 workers); all of them are stopped when the test ends."""
    started: list[Instance] = []

    def _launch(
        database_url: str, *, name: str, delay_ms: int = 0, token: str = e2e_token, **kwargs: object
    ) -> Instance:
        instance = start_instance(
            name=name,
            database_url=database_url,
            token=token,
            log_dir=tmp_path,
            delay_ms=delay_ms,
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(instance)
        return instance

    yield _launch
    for instance in started:
        instance.stop()
    for instance in started:
        # Captured by pytest and shown only when the test fails.
        print(f"--- gunicorn {instance.name} ({instance.log_path}) ---\n{instance.log()}")


# -- processes run as the "postgres" user when we are root -------------------------------------


def _as_postgres() -> dict[str, Any]:
    """PostgreSQL and PgBouncer refuse to run as root: as root, start them as ``postgres``
    (directly, no wrapper process, so the PID we hold is theirs)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _private_dir(prefix: str) -> Path:
    # Not under pytest's tmp_path: that one is private to root, and the servers run as postgres.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


def _wait_for_connection(url: str, process_alive: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not process_alive():
            pytest.fail(f"{what} exited before accepting connections")
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.1)
    pytest.fail(f"{what} did not accept connections within {READY_TIMEOUT}s: {last}")


# -- a private PostgreSQL cluster ------------------------------------------------------------


def _postgres_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    assert found, (
        "the restart test needs the PostgreSQL server binaries (scripts/bootstrap.sh installs them)"
    )
    return Path(found[-1]).parent


@dataclass
class PrivateCluster:
    """A throw-away PostgreSQL cluster on a free port, to be restarted at will."""

    bin_dir: Path
    data_dir: Path
    port: int
    log_path: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
            **_as_postgres(),
        )
        assert result.returncode == 0, f"pg_ctl {' '.join(args)}: {result.stdout}{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        self.ctl("-o", options, "start")

    def restart(self) -> None:
        # "fast": every session is terminated and its open transaction rolled back.
        self.ctl("-m", "fast", "restart")

    def stop(self) -> None:
        self.ctl("-m", "immediate", "stop")

    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of this test's own; the machine's shared one is never touched."""
    bin_dir = _postgres_bin()
    root = _private_dir("idempotency-pg-")
    cluster = PrivateCluster(
        bin_dir=bin_dir, data_dir=root / "data", port=_free_port(), log_path=root / "server.log"
    )
    try:
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            check=True,
            timeout=120,
            **_as_postgres(),
        )
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_database(private_postgres: PrivateCluster) -> tuple[str, str]:
    """The example project migrated into the private cluster: ``(database url, token)``."""
    with psycopg.connect(private_postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    url = private_postgres.url("shop")
    _manage(url, "migrate", "--noinput")
    _manage(url, "shell", "-c", _CREATE_USER)
    _manage(url, "drf_create_token", E2E_USERNAME)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT key FROM authtoken_token").fetchone()
    assert row is not None
    return url, str(row[0])


# -- PgBouncer -------------------------------------------------------------------------------

#: scripts/bootstrap.sh (run by `make test`) installs it; the test itself installs nothing.
PGBOUNCER_PACKAGE = "scripts/bootstrap.sh, or apt-get install -y pgbouncer"


@dataclass
class Bouncer:
    port: int
    pool_size: int
    log_path: Path
    admin_user: str

    def url_for(self, database_url: str) -> str:
        """The same database, reached through PgBouncer."""
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}"))

    def show(self, what: str, database: str) -> list[dict[str, Any]]:
        """Rows of the admin console's ``SHOW <what>`` about ``database``."""
        url = f"postgres://{self.admin_user}@127.0.0.1:{self.port}/pgbouncer"
        # The console speaks only the simple query protocol: a client-side-binding cursor.
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            cursor = conn.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return [row for row in rows if row.get("database") == database]


@pytest.fixture
def pgbouncer(e2e_admin_url: str) -> Iterator[Bouncer]:
    """PgBouncer in transaction-pooling mode in front of the shared PostgreSQL, with fewer
    server connections than there are gunicorn workers, so transactions share connections."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    assert Path(binary).exists(), f"pgbouncer is not installed: {PGBOUNCER_PACKAGE}"
    upstream = urlsplit(e2e_admin_url)
    root = _private_dir("idempotency-pgbouncer-")
    user = upstream.username or "postgres"
    bouncer = Bouncer(
        port=_free_port(), pool_size=3, log_path=root / "pgbouncer.log", admin_user=user
    )
    login = f"user={user}"
    if upstream.password:
        login += f" password={upstream.password}"
    config = root / "pgbouncer.ini"
    config.write_text(
        "[databases]\n"
        f"* = host={upstream.hostname or '127.0.0.1'} port={upstream.port or 5432} {login}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {bouncer.port}\n"
        "unix_socket_dir =\n"
        "auth_type = any\n"
        f"admin_users = {user}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {bouncer.pool_size}\n"
        "min_pool_size = 0\n"
        "reserve_pool_size = 0\n"
        "max_client_conn = 500\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {bouncer.log_path}\n"
        f"pidfile = {root / 'pgbouncer.pid'}\n"
    )
    if os.geteuid() == 0:
        shutil.chown(config, "postgres", "postgres")
    process = subprocess.Popen(
        [binary, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        **_as_postgres(),
    )
    try:
        _wait_for_connection(
            bouncer.url_for(e2e_admin_url), lambda: process.poll() is None, "pgbouncer"
        )
        yield bouncer
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if bouncer.log_path.exists():
            print(f"--- pgbouncer log ---\n{bouncer.log_path.read_text(errors='replace')[-5000:]}")
        shutil.rmtree(root, ignore_errors=True)
