"""End-to-end fixtures: the example project under gunicorn (4 sync workers) on a fresh
PostgreSQL database, reached over real HTTP.

The migrated database is built once per session as a template; every test gets its own copy
(``CREATE DATABASE ... TEMPLATE``), so rows counted by one test never come from another.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from psycopg import sql

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_USERNAME = "e2e"
# The hidden inputs of a rendered form: the key the page was issued, and Django's CSRF token.
KEY_INPUT = re.compile(r'name="idempotency_key" value="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# Databases made by these tests are named <prefix>tpl_<random> (the migrated template) and
# <prefix><random> (one per test), on DATABASE_URL's server.
E2E_DB_PREFIX = os.environ.get("IDEMPOTENCY_E2E_DB_PREFIX", "e2e_")
# Generous: on a loaded CI machine a worker needs seconds to import Django.
STARTUP_TIMEOUT = 60.0
PROBE_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Server:
    """A running example project: where it listens, whom to be, and its database."""

    url: str
    token: str
    database_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """A direct connection to the server's database, to count rows behind its back."""
        return psycopg.connect(self.database_url, autocommit=True)


def logged_in_browser(url: str, *, timeout: float) -> requests.Session:
    """A browser session of the e2e user, logged in through the example's login form."""
    browser = requests.Session()
    page = browser.get(f"{url}/accounts/login/", timeout=timeout)
    csrf = CSRF_INPUT.search(page.text)
    assert csrf is not None, page.text
    response = browser.post(
        f"{url}/accounts/login/",
        data={"username": E2E_USERNAME, "password": "e2e", "csrfmiddlewaretoken": csrf.group(1)},
        allow_redirects=False,
        timeout=timeout,
    )
    assert response.status_code == 302, response.text
    return browser


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    return psycopg.connect(url, autocommit=True)


def _create_database(admin_url: str, name: str, template: str | None = None) -> None:
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with _admin(admin_url) as conn:
        conn.execute(query)


def _drop_database(admin_url: str, name: str) -> None:
    with _admin(admin_url) as conn:
        # FORCE: a worker killed mid-request may leave a backend behind for a moment.
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _project_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # pytest-django exported the test settings; the subprocesses are the example project.
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def _manage(database_url: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=_project_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr}"


# Ports handed out by _free_port(), each still bound by the socket that found it.
_HELD_PORTS: list[socket.socket] = []


def _free_port() -> int:
    """A port on 127.0.0.1 that no other program is handed until this test run ends.

    Not bind-then-close, which races: the port stays bound here (SO_REUSEADDR, never
    listening), so the kernel gives it to nobody else asking for a free port (another test run
    included), while the server we start, which also sets SO_REUSEADDR (gunicorn, uvicorn,
    PostgreSQL, PgBouncer), can still bind and listen on it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    _HELD_PORTS.append(sock)
    return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def _release_ports() -> Iterator[None]:
    yield
    while _HELD_PORTS:
        _HELD_PORTS.pop().close()


@pytest.fixture(scope="session")
def e2e_admin_url() -> str:
    """The PostgreSQL database (DATABASE_URL, normally ``test``) used to create the others."""
    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith(("postgres://", "postgresql://")), (
        "the e2e tests need DATABASE_URL=postgres://..."
    )
    return url


@pytest.fixture(scope="session")
def e2e_template(e2e_admin_url: str) -> Iterator[tuple[str, str]]:
    """A migrated database with a user and its token: ``(database name, token)``."""
    name = f"{E2E_DB_PREFIX}tpl_{secrets.token_hex(4)}"
    url = _with_database(e2e_admin_url, name)
    _create_database(e2e_admin_url, name)
    try:
        _manage(url, "migrate", "--noinput")
        _manage(url, "shell", "-c", _CREATE_USER)
        _manage(url, "drf_create_token", E2E_USERNAME)
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT t.key FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id"
                " WHERE u.username = %s",
                [E2E_USERNAME],
            ).fetchone()
        assert row is not None
        yield name, str(row[0])
    finally:
        _drop_database(e2e_admin_url, name)


_CREATE_USER = (
    "from django.contrib.auth import get_user_model; "
    f"get_user_model().objects.create_user({E2E_USERNAME!r}, password='e2e')"
)


@pytest.fixture
def e2e_database_url(e2e_admin_url: str, e2e_template: tuple[str, str]) -> Iterator[str]:
    """A fresh copy of the template database for one test; dropped afterwards."""
    template, _ = e2e_template
    name = f"{E2E_DB_PREFIX}{secrets.token_hex(6)}"
    _create_database(e2e_admin_url, name, template=template)
    try:
        yield _with_database(e2e_admin_url, name)
    finally:
        _drop_database(e2e_admin_url, name)


@pytest.fixture
def gateway_delay_ms() -> int:
    """EXAMPLE_GATEWAY_DELAY_MS for the server; override per test with
    ``@pytest.mark.parametrize("gateway_delay_ms", [300])``."""
    return 0


@pytest.fixture
def example_server(
    e2e_database_url: str,
    e2e_template: tuple[str, str],
    gateway_delay_ms: int,
    tmp_path: Path,
) -> Iterator[Server]:
    """gunicorn serving ``example_project.wsgi:application`` with 4 sync workers."""
    _, token = e2e_template
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    process, server = _serve(
        _gunicorn(port),
        port,
        database_url=e2e_database_url,
        token=token,
        log_path=log_path,
        EXAMPLE_GATEWAY_DELAY_MS=str(gateway_delay_ms),
    )
    try:
        yield server
    finally:
        _stop(process)
        # Captured by pytest and shown only when the test fails.
        print(f"--- gunicorn log ({log_path}) ---\n{log_path.read_text(errors='replace')}")


def _gunicorn(port: int, *, workers: int = 4, backlog: int = 256) -> list[str]:
    """The command line of the example project under gunicorn with sync workers; ``backlog``:
    a listen queue deep enough for every request a test fires at once."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "example_project.wsgi:application",
        f"--workers={workers}",
        "--worker-class=sync",
        f"--bind=127.0.0.1:{port}",
        "--timeout=30",
        "--graceful-timeout=5",
        f"--backlog={backlog}",
        *_no_control_socket(),
    ]


def _serve(
    command: list[str], port: int, *, database_url: str, token: str, log_path: Path, **env: str
) -> tuple[subprocess.Popen[bytes], Server]:
    """Run ``command``, a server of the example project listening on ``port``, from the
    repository root with its output in ``log_path``, and wait until it answers; stopped again
    if it never does."""
    server = Server(url=f"http://127.0.0.1:{port}", token=token, database_url=database_url)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_project_env(database_url, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(process, server, log_path)
    except BaseException:
        _stop(process)
        raise
    return process, server


def _no_control_socket() -> list[str]:
    # gunicorn 27 opens a control socket at one fixed path in $HOME by default: two servers at
    # once (another test run on the same machine) would fight over it.
    major = int(version("gunicorn").split(".")[0])
    return ["--no-control-socket"] if major >= 27 else []


def _wait_until_ready(process: subprocess.Popen[bytes], server: Server, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            response = requests.get(
                f"{server.url}/api/orders/", headers=server.headers, timeout=PROBE_TIMEOUT
            )
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or no worker has finished importing the project.
            time.sleep(0.1)
            continue
        assert response.status_code == 200, response.text
        return
    pytest.fail(f"gunicorn did not answer within {STARTUP_TIMEOUT}s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master (it stops its workers), SIGKILL if it does not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
