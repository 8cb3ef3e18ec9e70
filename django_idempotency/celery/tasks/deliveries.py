"""One delivery of an ``IdempotentTask``: counted, run once, or, past the delivery limit or with
arguments that cannot be fingerprinted, stored as failed (``TaskAbandoned``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ...core.operation import Operation
from ...core.problems import problem_document, problem_response
from ...models import TaskDelivery
from ...once import Outcome, answer, json_view, operation
from .fingerprint import name_fingerprint, task_fingerprint

if TYPE_CHECKING:
    from .task import IdempotentTask

logger = logging.getLogger(__package__)  # django_idempotency.celery.tasks, as before the split

#: Status of the stored failure of a task that gave up (a 5xx would not be stored).
GAVE_UP_STATUS = 422


class TaskAbandoned(Exception):
    """The task's operation is stored as failed; every later delivery of it answers this.

    ``problem`` is the stored RFC 9457 document (``type`` ends in ``#task-abandoned``).
    """

    # Result backends (and pickle) rebuild it from this path: the one it had before the split.
    __module__ = "django_idempotency.celery.tasks"

    def __init__(self, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail)  # one argument: result backends rebuild it from its args
        self.problem = problem or {}


def deliver(task: IdempotentTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    """Count this delivery, then run the task once, or store its failure past the limit."""
    try:
        fingerprint = task_fingerprint(task.name, args, kwargs, task.serializer or "json")
    except Exception as exc:
        if task.request.is_eager:
            raise  # run in the caller's process: the caller gets the error, nothing is lost
        # On a worker: not acknowledged and lost, but stored as failed, under a fingerprint
        # of the task's name (a redelivery answers the same failure).
        prepared = task_operation(task, args, kwargs, name_fingerprint(task.name))
        return abandon(task, prepared, f"its arguments cannot be fingerprinted ({exc!r})")
    prepared = task_operation(task, args, kwargs, fingerprint)
    forget = _forgetter(prepared)
    deliveries = TaskDelivery.objects.count_delivery(
        prepared.database,
        scope=prepared.scope,
        key=prepared.key,
        now=timezone.now(),
        lifetime=prepared.ttl,
    )
    limit = task.idempotency_delivery_limit()
    if deliveries > limit:
        return abandon(
            task,
            prepared,
            f"it was delivered {deliveries - 1} times without finishing (its worker died, "
            f"or was killed, each time); the limit is {limit} (idempotency_max_deliveries, "
            "IDEMPOTENCY_TASK_MAX_DELIVERIES)",
        )

    def run() -> Any:
        # Removed with the run's commit: a run that dies before it keeps the count.
        forget(quietly=False)
        return task.run(*args, **kwargs)

    try:
        outcome = answer(prepared, json_view(run))
    except BaseException:
        forget(quietly=True)  # this process survived the delivery
        raise
    if outcome.replayed:
        forget(quietly=True)
    return outcome


def task_operation(
    task: IdempotentTask, args: tuple[Any, ...], kwargs: dict[str, Any], fingerprint: str
) -> Operation:
    """The ``Operation`` of this delivery, from the task's options and hooks."""
    # Overrides of the hooks' deprecated names (``idempotency_key`` ...) still count.
    key = getattr(task, "idempotency_key", task.get_idempotency_key)
    reference = getattr(task, "idempotency_reference", task.get_idempotency_reference)
    return operation(
        scope=f"celery:{task.name}",
        key=key(args, kwargs),
        fingerprint=fingerprint,
        reference=reference(args, kwargs),
        database=task.idempotency_database,
        ttl=task.idempotency_lifetime(),
        lock_timeout=task.get_idempotency_lock_timeout(),
        method="TASK",
        door="celery",
    )


def abandon(task: IdempotentTask, prepared: Operation, why: str) -> Outcome:
    """Store the operation as failed (unless a run of it was stored): every later delivery
    answers that, and this one fails, so the broker's message is acknowledged."""
    document = problem_document(
        status=GAVE_UP_STATUS,
        code="task-abandoned",
        title="The task was given up",
        detail=(
            f"{task.name}[{task.request.id}] was not run: {why}. Its operation is stored "
            "as failed; send it with a new task id to run it."
        ),
        task=task.name,
        task_id=str(task.request.id),
    )
    logger.error("%s", document["detail"])
    # Stored whatever IDEMPOTENCY_RELEASE_STATUS_CODES says: this status means "given up".
    stored = dataclasses.replace(prepared, release_status_codes=frozenset())
    outcome = answer(stored, lambda: problem_response(document))
    _forgetter(prepared)(quietly=True)
    return outcome


def _forgetter(prepared: Operation) -> Callable[..., None]:
    def forget(*, quietly: bool) -> None:
        method = TaskDelivery.objects.forget_quietly if quietly else TaskDelivery.objects.forget
        method(prepared.database, scope=prepared.scope, key=prepared.key)

    return forget
