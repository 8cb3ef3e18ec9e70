"""Fixtures of the fault tests: several gunicorn instances at once, a private database server
(a PostgreSQL cluster, or a MariaDB server on a MariaDB run) that may be restarted or killed, and
PgBouncer in transaction-pooling mode. Everything is started by the test on 127.0.0.1 and free
ports, and stopped by PID afterwards.

The machine's shared servers are never restarted: the restart test gets a server of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.databases import create_database, is_mariadb, mysql_isolation, session, with_options
from tests.e2e.conftest import _CREATE_USER, E2E_USERNAME, _manage
from tests.services import Bouncer, Cluster, MariaDBServer, free_port, private_dir

from .harness import Instance, start_instance

Launch = Callable[..., Instance]
PrivateServer = Cluster | MariaDBServer


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


# -- a private database server ---------------------------------------------------------------


@pytest.fixture
def private_server(e2e_admin_url: str) -> Iterator[PrivateServer]:
    """A server of this test's own, of the kind DATABASE_URL names: a PostgreSQL cluster or a
    MariaDB server (its own data directory, port and socket); the machine's shared ones are
    never touched. Stopped and its directory removed afterwards."""
    server: PrivateServer
    if is_mariadb(e2e_admin_url):
        server = MariaDBServer(root=private_dir("idempotency-mariadb-", "mysql"), port=free_port())
    else:
        server = Cluster(root=private_dir("idempotency-pg-"), port=free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def private_database(private_server: PrivateServer) -> tuple[str, str]:
    """The example project migrated into the private server: ``(database url, token)``."""
    create_database(private_server.url(), "shop")
    url = private_server.url("shop")
    if is_mariadb(url):
        url = with_options(url, isolation_level=mysql_isolation())
    _manage(url, "migrate", "--noinput")
    _manage(url, "shell", "-c", _CREATE_USER)
    _manage(url, "drf_create_token", E2E_USERNAME)
    with session(url) as conn:
        # Qualified: KEY is a reserved word in MySQL.
        row = conn.execute("SELECT t.key FROM authtoken_token t").fetchone()
    assert row is not None
    return url, str(row[0])


# -- PgBouncer -------------------------------------------------------------------------------


@pytest.fixture
def pgbouncer(e2e_admin_url: str) -> Iterator[Bouncer]:
    """PgBouncer in transaction-pooling mode in front of the shared PostgreSQL, with fewer
    server connections than there are gunicorn workers, so transactions share connections."""
    upstream = urlsplit(e2e_admin_url)
    bouncer = Bouncer(
        root=private_dir("idempotency-pgbouncer-"),
        port=free_port(),
        upstream_port=upstream.port or 5432,
        upstream_host=upstream.hostname or "127.0.0.1",
        user=upstream.username or "postgres",
        password=upstream.password,
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()
        if bouncer.log_path.exists():
            print(f"--- pgbouncer log ---\n{bouncer.log_path.read_text(errors='replace')[-5000:]}")
        shutil.rmtree(bouncer.root, ignore_errors=True)
