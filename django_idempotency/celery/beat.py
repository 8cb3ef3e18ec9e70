"""The package's Celery tasks: ``django_idempotency.purge_expired`` and ``.relay_outbox``.

Needs the ``celery`` extra. Nothing else in the package imports this module: list it in
``CELERY_IMPORTS`` (or import it from your Celery app module) to register the tasks.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

TASK_NAME = "django_idempotency.purge_expired"
RELAY_TASK_NAME = "django_idempotency.relay_outbox"


@shared_task(name=TASK_NAME, ignore_result=False)  # type: ignore[untyped-decorator]
def purge_expired(
    batch_size: int | None = None,
    older_than: str | float | None = None,
    database: str | None = None,
    scope: str | None = None,
) -> dict[str, Any]:
    """Run ``IdempotencyRecord.objects.purge_expired()``; return what it did as a dict.

    ``older_than`` is an age like ``"7d"`` or a positive number of seconds; arguments stay
    JSON-friendly so the task can be scheduled from settings or django-celery-beat. They are
    checked by the same parser as ``idempotency_purge``'s: a bad one (``older_than=0``, ``True``,
    ``batch_size=0``) raises ``PurgeArgumentError`` and nothing is deleted.
    """
    # Imported here: a Celery app module may import this one before Django is set up.
    from ..arguments import parse_purge_args
    from ..models import IdempotencyRecord

    args = parse_purge_args(
        batch_size=batch_size, older_than=older_than, scope=scope, database=database
    )
    result = IdempotencyRecord.objects.using(args.database).purge_expired(
        batch_size=args.batch_size,
        older_than=args.older_than,
        scope=args.scope,
    )
    return {**asdict(result), "rows_per_second": result.rows_per_second}


@shared_task(name=RELAY_TASK_NAME, bind=True)  # type: ignore[untyped-decorator]
def relay_outbox(
    self: Any,
    older_than: str | float | None = None,
    batch_size: int | None = None,
    database: str | None = None,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    """Publish the outbox messages left unsent (``celery.outbox.relay_outbox``) with
    this task's own Celery app; return what it did as a dict: ``sent``, the messages
    ``set_aside`` (each with its attempts, error and whether it is now parked) and how many
    are ``parked`` on the database.

    ``older_than`` is in seconds (default ``IDEMPOTENCY_OUTBOX_RELAY_AFTER``); the arguments are
    checked by the same parser as ``idempotency_relay_outbox``'s (``RelayArgumentError``). An
    unreachable broker raises ``OutboxSendError``, which fails the task; the next run retries.
    """
    from ..arguments import parse_relay_args
    from .outbox import relay_outbox as relay

    args = parse_relay_args(
        older_than=older_than, batch_size=batch_size, database=database, max_attempts=max_attempts
    )
    result = relay(
        app=self.app,
        older_than=args.older_than,
        batch_size=args.batch_size,
        using=args.database,
        max_attempts=args.max_attempts,
    )
    return result.as_dict()
