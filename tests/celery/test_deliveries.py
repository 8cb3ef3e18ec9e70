"""``IdempotentTask`` on a real prefork worker over RabbitMQ: a task that kills its own worker
is failed (stored, visible) after its delivery limit instead of coming back for ever, and the
arguments kombu's JSON carries (``Decimal``, ``datetime``, ``date``, ``UUID``) run once."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from django_idempotency.models import IdempotencyRecord, TaskDelivery
from tests.celery.conftest import RunWorker
from tests.services import AMQP_URL
from tests.testapp.models import Execution

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def amqp_worker(run_worker: RunWorker, queue: str) -> dict[str, str]:
    """A ``celery worker`` with a prefork pool of one process, on this test's RabbitMQ queue."""
    running = run_worker(
        queue,
        pool="prefork",
        options=("--prefetch-multiplier=1",),
        CELERY_TEST_BROKER_URL=AMQP_URL,
    )
    return {"queue": queue, "hostname": running.hostname, "log": str(running.log_path)}


def send(name: str, args: list[Any], queue: str, task_id: str | None = None) -> AsyncResult:
    """Publish to RabbitMQ, where the worker listens (the test's app defaults to Redis)."""
    from tests.celery.app import app

    with app.connection_for_write(AMQP_URL) as broker:
        return app.send_task(name, args=args, task_id=task_id, queue=queue, connection=broker)


def test_a_task_that_kills_its_worker_is_failed_after_its_limit_and_the_queue_moves_on(
    amqp_worker: dict[str, str],
) -> None:
    task_id = str(uuid.uuid4())
    poison = send("tests.kill_own_worker", ["poison"], amqp_worker["queue"], task_id)
    behind = send("tests.record_execution", ["behind"], amqp_worker["queue"])

    with pytest.raises(Exception) as failed:  # noqa: PT011 (rebuilt by the result backend)
        poison.get(timeout=90)
    assert type(failed.value).__name__ == "TaskAbandoned"
    assert behind.get(timeout=60) == Execution.objects.get(label="behind").pk

    # Two deliveries (idempotency_max_deliveries=2) killed their pool process; the third
    # stored the failure, visible in the admin, and its message was acknowledged.
    log = Path(amqp_worker["log"]).read_text()
    assert log.count("WorkerLostError") >= 2, log
    assert "was delivered 2 times without finishing" in log
    record = IdempotencyRecord.objects.get(key=task_id)
    assert (record.scope, record.state, record.response_status) == (
        "celery:tests.kill_own_worker",
        IdempotencyRecord.State.COMPLETED,
        422,
    )
    assert json.loads(bytes(record.response_body))["type"].endswith("#task-abandoned")
    assert not Execution.objects.filter(label="poison").exists()  # each death rolled back
    assert not TaskDelivery.objects.exists()

    # Sent again with the same id, it answers the stored failure without running.
    poison.forget()
    again = send("tests.kill_own_worker", ["poison"], amqp_worker["queue"], task_id)
    with pytest.raises(Exception) as refused:  # noqa: PT011
        again.get(timeout=60)
    assert type(refused.value).__name__ == "TaskAbandoned"
    assert Path(amqp_worker["log"]).read_text().count("WorkerLostError") == log.count(
        "WorkerLostError"
    )


def test_arguments_kombus_json_carries_run_once(amqp_worker: dict[str, str]) -> None:
    task_id = str(uuid.uuid4())
    order = uuid.uuid4()
    args = [
        Decimal("10.50"),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        date(2026, 1, 2),
        order,
    ]
    first = send("tests.record_typed_arguments", args, amqp_worker["queue"], task_id)
    assert first.get(timeout=60) == ["Decimal", "datetime", "date", "UUID"]
    first.forget()

    again = send("tests.record_typed_arguments", args, amqp_worker["queue"], task_id)
    assert again.get(timeout=60) == ["Decimal", "datetime", "date", "UUID"]
    assert Execution.objects.filter(label=f"typed:{order}").count() == 1
    assert IdempotencyRecord.objects.get(key=task_id).replay_count == 1

    again.forget()
    other = [Decimal("10.5"), *args[1:]]  # another amount's lexeme: a refusal, never a replay
    mismatch = send("tests.record_typed_arguments", other, amqp_worker["queue"], task_id)
    with pytest.raises(Exception) as refused:  # noqa: PT011
        mismatch.get(timeout=60)
    assert type(refused.value).__name__ == "KeyMismatch"
