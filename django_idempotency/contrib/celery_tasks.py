"""Exactly-once Celery tasks: ``@app.task(base=IdempotentTask)``. Needs the ``celery`` extra.

Celery delivers at least once (``acks_late`` redelivers the task of a dead worker, a visibility
timeout redelivers one still running). The task's writes, its claim and its result commit in one
transaction through ``django_idempotency.once``, so a redelivered copy whose first run committed
returns the stored result without running, one whose first run died runs again, and one that
arrives while the original still runs waits ``idempotency_wait`` seconds, then answers from
storage or retries later with Celery's own ``retry(countdown=...)``: never twice, never dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init

from django_idempotency.exceptions import RequestInFlight
from django_idempotency.once import call_fingerprint, perform

logger = logging.getLogger(__name__)

#: Brokers that redeliver an unacknowledged message after ``visibility_timeout`` seconds.
VISIBILITY_TIMEOUT_BROKERS = ("redis", "rediss", "sqs", "sentinel")


class IdempotentTask(Task):  # type: ignore[misc]
    """A task that runs once per key: the task id, or what ``idempotency_key()`` returns."""

    #: Acknowledge after the run, so a dead worker's task is delivered again ...
    acks_late = True
    #: ... also when only the pool's child process died.
    reject_on_worker_lost = True
    #: Seconds a copy waits for a running original before it retries later.
    idempotency_wait: float = 5.0
    #: Countdown of that retry, in seconds.
    idempotency_retry_countdown: float = 10.0
    #: How long the result is replayed (seconds or a timedelta); default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: Any = None

    def idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key this run is deduplicated by; the task id unless overridden."""
        return str(self.request.id)

    def idempotency_reference(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """A business reference that only one key may use (e.g. ``"order:42"``)."""
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)  # a plain function call, not a delivery
        try:
            outcome = perform(
                lambda: self.run(*args, **kwargs),
                scope=f"celery:{self.name}",
                key=self.idempotency_key(args, kwargs),
                fingerprint=call_fingerprint(self.name, args, kwargs),
                reference=self.idempotency_reference(args, kwargs),
                ttl=self.idempotency_ttl,
                lock_timeout=self.idempotency_wait,
                method="TASK",
            )
        except RequestInFlight as exc:
            # The original holds the key. Retrying keeps the work without running it twice:
            # the retry finds either the stored result or a released key.
            raise self.retry(
                exc=exc, countdown=self.idempotency_retry_countdown, max_retries=None
            ) from exc
        if outcome.replayed:
            logger.info("%s[%s] already ran: stored result returned", self.name, self.request.id)
        return outcome.result


def configuration_problems(app: Celery) -> list[str]:
    """What in the app's configuration would let an idempotent task's work be lost."""
    problems: list[str] = []
    for name, task in sorted(app.tasks.items()):
        if not isinstance(task, IdempotentTask):
            continue
        if not task.acks_late:
            problems.append(
                f"{name}: acks_late is off, so the task of a worker that dies is lost; "
                "set acks_late=True (or task_acks_late)."
            )
        if not task.reject_on_worker_lost:
            problems.append(
                f"{name}: reject_on_worker_lost is off, so a task whose pool process dies is "
                "acknowledged, not delivered again; set task_reject_on_worker_lost=True."
            )
    scheme = str(app.conf.broker_url or "").split(":", 1)[0]
    if scheme in VISIBILITY_TIMEOUT_BROKERS:
        options = app.conf.broker_transport_options or {}
        if "visibility_timeout" not in options:
            problems.append(
                f"broker {scheme}: set broker_transport_options['visibility_timeout'] above "
                "your longest task (plus its countdowns); a task still running after it is "
                "delivered again (it then waits and retries instead of running twice)."
            )
    return problems


@worker_init.connect  # type: ignore[untyped-decorator]
def _check_worker(sender: Any = None, **kwargs: Any) -> None:
    """Checked when a worker starts, where the app's final configuration is known."""
    app = getattr(sender, "app", None)
    if app is None:
        return
    for problem in configuration_problems(app):
        logger.warning("django_idempotency: %s", problem)
