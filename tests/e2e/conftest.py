"""End-to-end fixtures: the example project under gunicorn (4 sync workers) or uvicorn on a fresh
database of DATABASE_URL's server (PostgreSQL, or MariaDB for the tests that run on both),
reached over real HTTP (the processes: tests/services.py; the databases: tests/databases.py).

The migrated database is built once per session as a template; every test gets its own copy
(``copy_database``), so rows counted by one test never come from another.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests

from tests.databases import (
    copy_database,
    create_database,
    drop_database,
    is_mariadb,
    mysql_isolation,
    session,
    with_options,
)
from tests.services import (
    AppServer,
    AsgiServer,
    free_port,
    manage,
    release_ports,
    with_database,
)

E2E_USERNAME = "e2e"
# The hidden inputs of a rendered form: the key the page was issued, and Django's CSRF token.
KEY_INPUT = re.compile(r'name="idempotency_key" value="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# Databases made by these tests are named <prefix>tpl_<random> (the migrated template) and
# <prefix><random> (one per test), on DATABASE_URL's server.
E2E_DB_PREFIX = os.environ.get("IDEMPOTENCY_E2E_DB_PREFIX", "e2e_")


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


def _create_database(admin_url: str, name: str, template: str | None = None) -> None:
    if template is None:
        create_database(admin_url, name)
    else:
        copy_database(admin_url, template, name)


def _drop_database(admin_url: str, name: str) -> None:
    drop_database(admin_url, name)


def _manage(database_url: str, *args: str) -> None:
    try:
        manage(database_url, *args)
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session", autouse=True)
def _release_ports() -> Iterator[None]:
    yield
    release_ports()


@pytest.fixture(scope="session")
def e2e_admin_url() -> str:
    """The database (DATABASE_URL, normally ``test``) whose server gets the others: PostgreSQL,
    or MariaDB for the tests marked to run there too."""
    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith(("postgres://", "postgresql://")) or is_mariadb(url), (
        "the e2e tests need DATABASE_URL=postgres://... (or mysql://...)"
    )
    if is_mariadb(url):
        # The app servers get the isolation level under test in their URL (dj-database-url
        # makes it OPTIONS["isolation_level"]), and every database made from this URL keeps it.
        url = with_options(url, isolation_level=mysql_isolation())
    return url


@pytest.fixture(scope="session")
def e2e_template(e2e_admin_url: str) -> Iterator[tuple[str, str]]:
    """A migrated database with a user and its token: ``(database name, token)``."""
    name = f"{E2E_DB_PREFIX}tpl_{secrets.token_hex(4)}"
    url = with_database(e2e_admin_url, name)
    _create_database(e2e_admin_url, name)
    try:
        _manage(url, "migrate", "--noinput")
        _manage(url, "shell", "-c", _CREATE_USER)
        _manage(url, "drf_create_token", E2E_USERNAME)
        with session(url) as conn:
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
        yield with_database(e2e_admin_url, name)
    finally:
        _drop_database(e2e_admin_url, name)


@pytest.fixture
def gateway_delay_ms() -> int:
    """EXAMPLE_GATEWAY_DELAY_MS for the server; override per test with
    ``@pytest.mark.parametrize("gateway_delay_ms", [300])``."""
    return 0


def _start(server: AppServer, token: str) -> Server:
    """Start ``server`` and wait until it answers; fail the test with its log if it never does."""
    try:
        server.run()
    except RuntimeError as error:
        server.stop()
        pytest.fail(str(error))
    return Server(url=server.url, token=token, database_url=server.database_url)


@pytest.fixture
def example_server(
    e2e_database_url: str,
    e2e_template: tuple[str, str],
    gateway_delay_ms: int,
    tmp_path: Path,
) -> Iterator[Server]:
    """gunicorn serving ``example_project.wsgi:application`` with 4 sync workers."""
    _, token = e2e_template
    env = {"EXAMPLE_GATEWAY_DELAY_MS": str(gateway_delay_ms)}
    server = AppServer("gunicorn", free_port(), e2e_database_url, tmp_path / "gunicorn.log", env)
    try:
        yield _start(server, token)
    finally:
        server.stop()
        # Captured by pytest and shown only when the test fails.
        print(f"--- gunicorn log ({server.log_path}) ---\n{server.log()}")


#: Two processes, each an event loop with its per-request thread-sensitive threads.
UVICORN_WORKERS = 2


@pytest.fixture
def asgi_server(
    e2e_database_url: str, e2e_template: tuple[str, str], tmp_path: Path
) -> Iterator[Server]:
    """The example project under uvicorn (``example_project.asgi``), for the async doors."""
    _, token = e2e_template
    server = AsgiServer(
        "uvicorn",
        free_port(),
        e2e_database_url,
        tmp_path / "uvicorn.log",
        {},
        workers=UVICORN_WORKERS,
    )
    try:
        yield _start(server, token)
    finally:
        server.stop()
        print(f"--- uvicorn log ({server.log_path}) ---\n{server.log()}")
