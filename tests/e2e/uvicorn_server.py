"""The example project under uvicorn (``example_project.asgi``), for the async doors.

Import the ``asgi_server`` fixture into a test module; it reuses the gunicorn fixtures' fresh
database per test and their start/stop helpers.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server, _free_port, _serve, _stop

#: Two processes, each an event loop with its per-request thread-sensitive threads.
UVICORN_WORKERS = 2


@pytest.fixture
def asgi_server(
    e2e_database_url: str, e2e_template: tuple[str, str], tmp_path: Path
) -> Iterator[Server]:
    _, token = e2e_template
    port = _free_port()
    log_path = tmp_path / "uvicorn.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "example_project.asgi:application",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={UVICORN_WORKERS}",
        "--backlog=256",
        "--no-access-log",
    ]
    process, server = _serve(
        command, port, database_url=e2e_database_url, token=token, log_path=log_path
    )
    try:
        yield server
    finally:
        _stop(process)
        print(f"--- uvicorn log ({log_path}) ---\n{log_path.read_text(errors='replace')}")
