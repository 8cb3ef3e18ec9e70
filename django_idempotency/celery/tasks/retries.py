"""Retries of an ``IdempotentTask`` after a database error of operation, counted in a message
header of their own and spaced by the task's capped exponential backoff."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING, Any

from django.db import Error, InterfaceError, OperationalError, connections

if TYPE_CHECKING:
    from .task import IdempotentTask

logger = logging.getLogger(__package__)  # django_idempotency.celery.tasks, as before the split

#: What PEP 249 calls errors of the database's operation, not of the program: a lost or refused
#: connection, a lock or statement timeout, a deadlock or serialization failure. Each rolled the
#: run back, and each may pass. The other ``DatabaseError`` subclasses (``IntegrityError``,
#: ``DataError``, ``ProgrammingError``, ``InternalError``) would fail again the same way.
RETRIED_DATABASE_ERRORS = (OperationalError, InterfaceError)
#: The message header that counts a task's retries after a database error, carried by each retry.
DB_RETRIES_HEADER = "idempotency_db_retries"


def database_retry(task: IdempotentTask, exc: BaseException) -> Any:
    """The task's retry after ``exc`` (Celery's ``retry()`` raises it), or ``None`` when ``exc``
    is to be raised as it is: inside a caller's transaction (the retry is the caller's), or
    after ``idempotency_db_max_retries`` retries, logged as an error."""
    if any(c.in_atomic_block for c in connections.all(initialized_only=True)):
        return None
    _close_broken_connections()
    headers = dict(task.request.headers or {})
    retries = _count(headers.get(DB_RETRIES_HEADER))
    if retries >= task.idempotency_db_max_retries:
        logger.error(
            "%s[%s] gave up after %d retries on database errors; its work is not done: "
            "send the task again with the same id to run it once (%r)",
            task.name,
            task.request.id,
            retries,
            exc,
        )
        return None
    countdown = task.idempotency_db_retry_countdown(retries)
    return task.retry(
        exc=exc,
        countdown=countdown,
        max_retries=sys.maxsize,  # the limit is ours, counted in the header
        headers={**headers, DB_RETRIES_HEADER: retries + 1},
    )


def _count(value: Any) -> int:
    """A retry count from a message header; anything but a non-negative int counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _close_broken_connections() -> None:
    # Django closes a connection whose rollback failed, but not one that broke outside a
    # transaction. Celery's Django fixup closes every connection after a task, except for an
    # eager one (whose retry runs at once, inline) or with CELERY_DB_REUSE_MAX set.
    for connection in connections.all(initialized_only=True):
        with contextlib.suppress(Error):  # closing a dead connection may complain
            connection.close_if_unusable_or_obsolete()
