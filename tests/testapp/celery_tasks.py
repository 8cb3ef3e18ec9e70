"""Idempotent tasks the real-worker tests run (listed in tests/celery_app.py ``imports``)."""

from __future__ import annotations

from celery import shared_task

from django_idempotency.contrib.celery_tasks import IdempotentTask
from tests.testapp.models import Execution


@shared_task(  # type: ignore[untyped-decorator]
    base=IdempotentTask,
    name="tests.record_execution",
    idempotency_wait=0.5,
    idempotency_retry_countdown=1,
)
def record_execution(label: str) -> int:
    return Execution.objects.create(label=label).pk
