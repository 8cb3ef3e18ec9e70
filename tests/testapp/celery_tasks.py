"""Idempotent tasks the real-worker tests run (listed in tests/celery/app.py ``imports``)."""

from __future__ import annotations

import os
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from celery import shared_task

from django_idempotency.celery.tasks import IdempotentTask
from tests.testapp.models import Execution


@shared_task(  # type: ignore[untyped-decorator]
    base=IdempotentTask,
    name="tests.record_execution",
    idempotency_lock_timeout=0.5,
    idempotency_retry_countdown=1,
)
def record_execution(label: str) -> int:
    return Execution.objects.create(label=label).pk


@shared_task(  # type: ignore[untyped-decorator]
    base=IdempotentTask,
    name="tests.record_typed_arguments",
    idempotency_lock_timeout=0.5,
    idempotency_retry_countdown=1,
)
def record_typed_arguments(amount: Decimal, at: datetime, day: date, order: UUID) -> list[Any]:
    """What kombu's JSON carries besides JSON: the types arrive, and the task runs once."""
    Execution.objects.create(label=f"typed:{order}")
    return [type(value).__name__ for value in (amount, at, day, order)]


@shared_task(  # type: ignore[untyped-decorator]
    base=IdempotentTask,
    name="tests.kill_own_worker",
    idempotency_max_deliveries=2,
)
def kill_own_worker(label: str) -> None:
    """Writes, then ends its own process before the commit, on every delivery."""
    Execution.objects.create(label=label)
    os._exit(1)
