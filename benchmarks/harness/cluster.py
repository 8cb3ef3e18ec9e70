"""A private PostgreSQL cluster for one run: its own data directory, port and settings.

The benchmark's server-side attribution needs ``pg_stat_statements`` preloaded with planning
tracked, which only a server restart turns on; a cluster of its own gets that without touching
the machine's shared server. Created in a temporary directory with ``initdb`` (default
settings otherwise), stopped and removed at the end, whatever happens.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
# What the attribution reads: every statement's execution and planning time and WAL bytes.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_planning": "on",
    "pg_stat_statements.track_utility": "on",
    "pg_stat_statements.max": "5000",
}


def available(bindir: str = DEFAULT_BINDIR) -> bool:
    return (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user() -> list[str]:
    # initdb refuses to run as root: run the server as the distribution's postgres user.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@contextmanager
def private_cluster(bindir: str = DEFAULT_BINDIR, port: int | None = None) -> Iterator[str]:
    """Yield a superuser URL of a fresh cluster on 127.0.0.1; stop and delete it afterwards."""
    port = port or _free_port()
    root = Path(tempfile.mkdtemp(prefix="idempotency-bench-pg-"))
    data = root / "data"
    prefix = _as_server_user()
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    started = False
    try:
        subprocess.run(
            [*prefix, f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w",
             "-o", f"-p {port} -k {root} {options}", "start"],
            check=True, capture_output=True,
        )  # fmt: skip
        started = True
        yield f"postgres://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False, capture_output=True,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
