"""gunicorn on 127.0.0.1, started for one phase and stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

BENCH_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(
    *, database_url: str, workers: int, worker_class: str, log_path: Path
) -> Iterator[str]:
    """Yield the base URL of a running gunicorn; SIGTERM its master (by PID) on the way out."""
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--chdir", str(BENCH_DIR),
        "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--threads", "1",
        # Keep-alive only matters to gthread; the sync worker always closes the connection.
        "--keep-alive", "30",
        "--backlog", "2048",
        "--timeout", "60",
        "--log-level", "warning",
        "benchproject.wsgi:application",
    ]  # fmt: skip
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchproject.settings",
        "BENCH_DATABASE_URL": database_url,
    }
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base_url, process, workers)
        yield base_url
    finally:
        _stop(process)


def _wait_until_up(base_url: str, process: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see its log")
        try:
            # Any answer (a 404) means a worker has imported Django and serves requests.
            requests.get(base_url + "/", timeout=5)
        except requests.RequestException:
            time.sleep(0.1)
            continue
        # Every worker imports Django on its own; give the others time to finish booting.
        time.sleep(0.5 + 0.25 * workers)
        return
    raise RuntimeError("gunicorn did not answer within 30 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
