"""The processes tests/services.py starts for the end-to-end tests and the soak: ports that are
never handed out twice, the process tree, a private cluster restarted behind PgBouncer, and a
private MariaDB server killed and started again."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests import services
from tests.databases import session
from tests.services import (
    Bouncer,
    Cluster,
    MariaDBServer,
    children,
    connect,
    free_port,
    private_dir,
    use_ports,
)

SPAWN_ONE_CHILD = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'],"
    " stdin=subprocess.PIPE)\n"
    "print(child.pid, flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def port_range() -> Iterator[None]:
    yield
    use_ports(None)


def test_free_port_hands_out_each_port_of_a_range_once_and_passes_over_taken_ones(
    port_range: None,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = taken.getsockname()[1]
        use_ports(f"{first}-{first + 2}")
        # The other two ports may be some other socket's (a client's ephemeral port): the
        # range hands out what is free in it, each port once, then says it has none left.
        handed = [free_port() for _ in range(_free_in(first + 1, first + 2))]
        with pytest.raises(RuntimeError, match="no free port left"):
            free_port()
        assert set(handed) <= {first + 1, first + 2}
        assert len(set(handed)) == len(handed)
    with pytest.raises(ValueError, match="FIRST-LAST"):
        use_ports("18999-18900")


def test_a_held_port_is_free_for_the_server_started_on_it() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port), 5):
            pass
    # Still held: the kernel gives it to nobody asking for any free port.
    assert port in services._held


def test_children_are_the_live_processes_a_process_started() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWN_ONE_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())  # the child exists once its pid is printed
        assert children(parent.pid) == [child]
    finally:
        parent.kill()
        parent.communicate(timeout=10)
    assert children(parent.pid) == []


@pytest.mark.e2e
def test_a_private_cluster_restarts_behind_pgbouncer() -> None:
    root = private_dir("idempotency-services-test-")
    cluster = Cluster(root=root, port=free_port())
    bouncer = Bouncer(root=root, port=free_port(), upstream_port=cluster.port)
    try:
        cluster.init()
        cluster.start()
        bouncer.start()
        pooled = bouncer.url_for(cluster.url())
        with connect(pooled) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        cluster.restart("fast")
        # The pool's server connections died with the server; a new session gets a new one.
        with connect(pooled) as conn:
            assert conn.execute("SELECT 2").fetchone() == (2,)
        bouncer.kill()
        with pytest.raises(psycopg.OperationalError):
            connect(pooled)
        bouncer.start()
        with connect(pooled) as conn:
            assert conn.execute("SELECT 3").fetchone() == (3,)
    finally:
        bouncer.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
def test_a_private_mariadb_server_runs_with_its_options_and_recovers_what_was_committed() -> None:
    root = private_dir("idempotency-services-test-", "mysql")
    # The benchmark's attribution starts it with performance_schema on (off by default).
    server = MariaDBServer(root=root, port=free_port(), options=("--performance-schema=ON",))
    try:
        server.init()
        server.start()
        with session(server.url()) as admin:
            assert admin.execute("SELECT @@performance_schema").fetchall() == ((1,),)
            admin.execute("CREATE DATABASE shop")
        with session(server.url("shop")) as conn:
            conn.execute("CREATE TABLE t (n INT PRIMARY KEY) ENGINE=InnoDB")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t VALUES (2)")
            server.restart("immediate")  # SIGKILL with the second row uncommitted
        with session(server.url("shop")) as conn:
            assert conn.execute("SELECT n FROM t").fetchall() == ((1,),)
        server.restart("fast")
        assert server.running()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
    assert not server.running()
    # Nothing listens on its port any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), 1).close()


def _free_in(*ports: int) -> int:
    """How many of ``ports`` a socket could bind now (another may hold one for a while)."""
    free = 0
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            free += 1
    return free
