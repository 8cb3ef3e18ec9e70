"""The processes tests/services.py starts for the end-to-end tests and the soak: ports that are
never handed out twice, the process tree, and a private cluster restarted behind PgBouncer."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from tests import services
from tests.services import Bouncer, Cluster, children, connect, free_port, private_dir, use_ports

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
        handed = [free_port(), free_port()]
        assert first not in handed
        assert len(set(handed)) == 2
        with pytest.raises(RuntimeError, match="no free port left"):
            free_port()
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
