"""``IdempotentTask`` on a real Celery worker over Redis, and its start-up configuration check."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from celery import Celery
from django.db import connections

from django_idempotency.celery.tasks import IdempotentTask, configuration_problems
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import call_fingerprint, run_once
from tests.celery.test_beat import worker  # noqa: F401 (the real worker fixture)
from tests.testapp.models import Execution

TASK = "tests.record_execution"


def executions(label: str) -> int:
    return Execution.objects.filter(label=label).count()


@pytest.mark.concurrent_db
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, databases="__all__")  # the worker checks every alias
def test_a_redelivered_task_returns_the_stored_result_without_running(
    worker: dict[str, str],  # noqa: F811
) -> None:
    from tests.celery.app import app

    task_id = str(uuid.uuid4())
    first = app.send_task(TASK, args=["twice"], task_id=task_id, queue=worker["queue"])
    outcome = first.get(timeout=60)
    first.forget()  # the second delivery must produce the answer, not the first one's
    again = app.send_task(TASK, args=["twice"], task_id=task_id, queue=worker["queue"])

    assert again.get(timeout=60) == outcome
    assert executions("twice") == 1
    record = IdempotencyRecord.objects.get(key=task_id)
    assert (record.scope, record.request_method, record.replay_count) == (
        f"celery:{TASK}",
        "TASK",
        1,
    )

    again.forget()
    mismatch = app.send_task(TASK, args=["other"], task_id=task_id, queue=worker["queue"])
    with pytest.raises(Exception) as refused:  # noqa: PT011 (rebuilt by the result backend)
        mismatch.get(timeout=60)
    assert type(refused.value).__name__ == "KeyMismatch"
    # tests.celery.app sets no visibility timeout for its Redis broker: the worker said so.
    assert (
        "django_idempotency: broker redis: set broker_transport_options"
        in Path(worker["log"]).read_text()
    )
    assert executions("other") == 0


@pytest.mark.concurrent_db
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, databases="__all__")  # the worker checks every alias
def test_a_copy_of_a_running_task_retries_later_and_never_runs_twice(
    worker: dict[str, str],  # noqa: F811
) -> None:
    """The original holds the key (here: this test, in a thread, the way a first worker
    would); the delivered copy waits ``idempotency_lock_timeout`` (0.5 s), retries with a countdown
    (1 s) as long as the original runs, then returns what the original stored."""
    from tests.celery.app import app

    task_id = str(uuid.uuid4())
    started, release = threading.Event(), threading.Event()

    def original() -> int:
        started.set()
        assert release.wait(30)
        return Execution.objects.create(label="held").pk

    def hold() -> int:
        try:
            result: int = run_once(
                original,
                scope=f"celery:{TASK}",
                key=task_id,
                fingerprint=call_fingerprint(TASK, ("held",), {}),
            )
            return result
        finally:
            connections.close_all()

    log = Path(worker["log"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(hold)
        assert started.wait(30)
        copy = app.send_task(TASK, args=["held"], task_id=task_id, queue=worker["queue"])
        deadline = time.monotonic() + 60
        while log.read_text().count(f"{TASK}[{task_id}] retry") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert not copy.ready()
        release.set()
        stored = holder.result(timeout=30)

    assert copy.get(timeout=60) == stored
    assert executions("held") == 1


# -- the start-up check ------------------------------------------------------------------


def app_with(broker: str, **options: object) -> Celery:
    app = Celery("check", broker=broker, set_as_current=False)
    app.conf.update(**options)

    @app.task(base=IdempotentTask, name="check.fine", shared=False)  # type: ignore[misc]
    def fine() -> None: ...

    @app.task(
        base=IdempotentTask,
        name="check.loses_work",
        acks_late=False,
        reject_on_worker_lost=False,
        shared=False,
    )  # type: ignore[misc]
    def loses_work() -> None: ...

    return app


def test_the_check_names_what_would_lose_work() -> None:
    problems = configuration_problems(app_with("redis://127.0.0.1:6379/0"))

    assert any(p.startswith("check.loses_work: acks_late") for p in problems), problems
    assert any(p.startswith("check.loses_work: reject_on_worker_lost") for p in problems)
    assert any("visibility_timeout" in p for p in problems)
    assert not any(p.startswith("check.fine") for p in problems)


# Celery's Django fixup runs the model checks on import, which ask SQLite whether it supports
# JSON fields: a query, the first time in a process.
@pytest.mark.django_db(databases="__all__")
def test_a_well_configured_app_has_no_problems() -> None:
    from example_project.celery import app

    app.loader.import_default_modules()
    assert "shop.ship_order" in app.tasks
    assert configuration_problems(app) == []
    amqp = app_with("amqp://guest:guest@127.0.0.1:5672//")
    assert not any("visibility_timeout" in p for p in configuration_problems(amqp))
