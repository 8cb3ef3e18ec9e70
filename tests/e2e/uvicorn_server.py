"""The example project under uvicorn (``example_project.asgi``), for the async doors.

Import the ``asgi_server`` fixture into a test module; it reuses the gunicorn fixtures' fresh
database per test and their start/stop helpers.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    REPO_ROOT,
    Server,
    _free_port,
    _project_env,
    _stop,
    _wait_until_ready,
)

#: Two processes, each an event loop with its per-request thread-sensitive threads.
UVICORN_WORKERS = 2


@pytest.fixture
def asgi_server(
    e2e_database_url: str, e2e_template: tuple[str, str], tmp_path: Path
) -> Iterator[Server]:
    _, token = e2e_template
    port = _free_port()
    server = Server(url=f"http://127.0.0.1:{port}", token=token, database_url=e2e_database_url)
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "example_project.asgi:application",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--workers={UVICORN_WORKERS}",
                "--backlog=256",
                "--no-access-log",
            ],
            cwd=REPO_ROOT,
            env=_project_env(e2e_database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(process, server, log_path)
        yield server
    finally:
        _stop(process)
        print(f"--- uvicorn log ({log_path}) ---\n{log_path.read_text(errors='replace')}")
