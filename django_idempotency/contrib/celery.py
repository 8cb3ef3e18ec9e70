"""The purge as a Celery task: ``django_idempotency.purge_expired``.

Needs the ``celery`` extra. Nothing else in the package imports this module: list it in
``CELERY_IMPORTS`` (or import it from your Celery app module) to register the task.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from celery import shared_task

TASK_NAME = "django_idempotency.purge_expired"


@shared_task(name=TASK_NAME, ignore_result=False)  # type: ignore[untyped-decorator]
def purge_expired(
    batch_size: int | None = None,
    older_than: str | float | None = None,
    database: str | None = None,
    scope: str | None = None,
) -> dict[str, Any]:
    """Run ``IdempotencyRecord.objects.purge_expired()``; return what it did as a dict.

    ``older_than`` is an age like ``"7d"`` or a number of seconds; arguments stay JSON-friendly
    so the task can be scheduled from settings or django-celery-beat.
    """
    # Imported here: a Celery app module may import this one before Django is set up.
    from django.db import router

    from django_idempotency.managers import DEFAULT_PURGE_BATCH_SIZE, parse_age
    from django_idempotency.models import IdempotencyRecord

    age: timedelta | None = None
    if isinstance(older_than, str):
        age = parse_age(older_than)
    elif older_than is not None:
        age = timedelta(seconds=float(older_than))
    alias = database or router.db_for_write(IdempotencyRecord)
    result = IdempotencyRecord.objects.using(alias).purge_expired(
        batch_size=batch_size or DEFAULT_PURGE_BATCH_SIZE,
        older_than=age,
        scope=scope,
    )
    return {**asdict(result), "rows_per_second": result.rows_per_second}
