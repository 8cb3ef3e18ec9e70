"""The purge task run by a real Celery worker over Redis, and the documented beat entry."""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import BaseSchedule
from django.utils import timezone

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from tests.celery.conftest import RunWorker
from tests.operations.test_purge import events_for, records

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"
DOCS = [ROOT / "docs" / "operating.md", ROOT / "README.md"]


def beat_snippets(path: Path) -> list[str]:
    """The fenced Python blocks of a document that define ``CELERY_BEAT_SCHEDULE``."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)
    return [block for block in blocks if "CELERY_BEAT_SCHEDULE =" in block]


def test_the_operating_guide_has_the_beat_entry() -> None:
    assert len(beat_snippets(DOCS[0])) == 1


# Celery's Django fixup runs the system checks when it imports the task modules; since
# Django 6.1 those read every database alias's features.
@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize(
    "snippet",
    [snippet for path in DOCS if path.exists() for snippet in beat_snippets(path)],
)
def test_the_documented_beat_entry_loads_into_celery(snippet: str) -> None:
    settings: dict[str, Any] = {}
    exec(snippet, settings)  # the block as a user pastes it into settings.py
    app = Celery("docs-check", set_as_current=False)
    app.conf.update(
        beat_schedule=settings["CELERY_BEAT_SCHEDULE"],
        imports=settings["CELERY_IMPORTS"],
        broker_url="memory://",
    )
    app.loader.import_default_modules()  # what worker and beat do with CELERY_IMPORTS
    app.finalize(auto=True)

    (name, entry), *others = app.conf.beat_schedule.items()
    assert not others
    assert entry["task"] in app.tasks, entry["task"]
    task = app.tasks[entry["task"]]
    assert task.__module__ == "django_idempotency.celery.beat"
    # The task accepts the documented arguments.
    assert set(entry.get("kwargs", {})) <= set(inspect.signature(task.run).parameters)
    scheduled = ScheduleEntry(name=name, app=app, **entry)
    assert isinstance(scheduled.schedule, BaseSchedule)
    due, next_check = scheduled.is_due()
    assert isinstance(due, bool)
    assert 0 < next_check <= 24 * 3600


@pytest.fixture
def worker(run_worker: RunWorker) -> Iterator[dict[str, str]]:
    """A real ``celery worker`` process (solo pool) on its own queue, using this test's database."""
    queue = f"idempotency-test-{uuid.uuid4().hex}"
    running = run_worker(queue, CELERY_TEST_REDIS_URL=REDIS_URL)
    try:
        yield {"queue": queue, "hostname": running.hostname, "log": str(running.log_path)}
    finally:
        running.stop()  # warm shutdown
        # The queue's bindings would otherwise pile up in Redis, one set per test run.
        redis.Redis.from_url(REDIS_URL).delete(
            f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"
        )


@pytest.mark.concurrent_db
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, databases="__all__")  # the worker checks every alias
def test_a_real_worker_purges_through_the_routine(worker: dict[str, str]) -> None:
    from tests.celery.app import app

    assert not app.conf.task_always_eager
    expired = records(2_500, expired=True)
    live = records(20, expired=False)
    events_for(expired[:40])
    old = records(5, expired=False, created_at=timezone.now() - timedelta(days=30))

    result = app.send_task(
        "django_idempotency.purge_expired",
        kwargs={"batch_size": 1_000, "older_than": "7d"},
        queue=worker["queue"],
    )
    outcome = result.get(timeout=60)

    assert result.worker == worker["hostname"]
    assert outcome["deleted"] == 2_505
    assert outcome["events_deleted"] == 40
    assert outcome["batches"] == 3
    assert outcome["database"] == "default"
    assert outcome["dry_run"] is False
    assert outcome["seconds"] > 0
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in live}
    assert not IdempotencyEvent.objects.exists()
    assert not IdempotencyRecord.objects.filter(pk__in=[r.pk for r in old]).exists()
    result.forget()
