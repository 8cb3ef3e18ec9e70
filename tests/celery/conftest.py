"""The real Celery worker the task tests send to: ``celery -A tests.celery.app worker`` on a
queue of the test's own and the test's own database (tests/services.py starts and stops it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

from tests.databases import mysql_isolation
from tests.services import CeleryWorker

RunWorker = Callable[..., CeleryWorker]


def this_tests_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    settings = connection.settings_dict
    scheme, port = ("mysql", 3306) if connection.vendor == "mysql" else ("postgres", 5432)
    password = f":{quote(settings['PASSWORD'])}" if settings.get("PASSWORD") else ""
    return (
        f"{scheme}://{quote(settings['USER'])}{password}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or port}/{settings['NAME']}"
    )


@pytest.fixture
def run_worker(transactional_db: None, tmp_path: Path) -> Iterator[RunWorker]:
    """``run_worker(queue, pool=..., workers=..., options=..., **env)``: a real worker of the
    test app on ``queue`` and this test's database, once it consumes; stopped (warm) at the end."""
    started: list[CeleryWorker] = []

    def run(queue: str, *, pool: str = "solo", workers: int = 1, **kwargs: Any) -> CeleryWorker:
        options = kwargs.pop("options", ())
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CELERY_TEST_QUEUE": queue,
            # tests.settings reads it on MariaDB: the worker runs under the test's isolation level
            "IDEMPOTENCY_TEST_MYSQL_ISOLATION": mysql_isolation(),
            **kwargs,
        }
        worker = CeleryWorker(
            "worker",
            0,
            this_tests_database_url(),
            tmp_path / f"worker-{len(started)}.log",
            env,
            workers=workers,
            app="tests.celery.app",
            queue=queue,
            pool=pool,
            options=tuple(options),
        )
        started.append(worker)
        worker.run()
        return worker

    yield run
    for worker in started:
        worker.stop()
        print(f"--- {worker.log_path} ---\n{worker.log()}")
