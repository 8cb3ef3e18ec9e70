"""Exactly-once Celery tasks: ``@app.task(base=IdempotentTask)``. Needs the ``celery`` extra.

Celery delivers at least once (``acks_late`` redelivers the task of a dead worker, a visibility
timeout redelivers one still running). The task's writes, its claim and its result commit in one
transaction through ``django_idempotency.once``, so a redelivered copy whose first run committed
returns the stored result without running, one whose first run died runs again, and one that
arrives while the original still runs waits ``idempotency_wait`` seconds, then answers from
storage or retries later with Celery's own ``retry(countdown=...)``: never twice, never dropped.
A run whose database connection breaks (or that meets a lock or statement timeout) rolled back
and is retried with a capped exponential backoff, since ``acks_late`` would acknowledge it as
failed and drop it.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init
from django.db import Error, InterfaceError, OperationalError, connections

from django_idempotency.exceptions import RequestInFlight
from django_idempotency.once import call_fingerprint, perform

logger = logging.getLogger(__name__)

#: Brokers that redeliver an unacknowledged message after ``visibility_timeout`` seconds.
VISIBILITY_TIMEOUT_BROKERS = ("redis", "rediss", "sqs", "sentinel")

#: What PEP 249 calls errors of the database's operation, not of the program: a lost or refused
#: connection, a lock or statement timeout, a deadlock or serialization failure. Each rolled the
#: run back, and each may pass. The other ``DatabaseError`` subclasses (``IntegrityError``,
#: ``DataError``, ``ProgrammingError``, ``InternalError``) would fail again the same way.
RETRIED_DATABASE_ERRORS = (OperationalError, InterfaceError)
#: The message header that counts a task's retries after a database error, carried by each retry.
DB_RETRIES_HEADER = "idempotency_db_retries"


class IdempotentTask(Task):  # type: ignore[misc]
    """A task that runs once per key: the task id, or what ``idempotency_key()`` returns.

    A run that raises one of ``RETRIED_DATABASE_ERRORS`` (its transaction rolled back, so
    nothing of it stayed) closes the connections that broke and retries: after about
    ``idempotency_db_retry_backoff`` seconds, doubling each time up to
    ``idempotency_db_retry_backoff_max``, half of each countdown random so that the tasks of
    a failed-over database do not come back together. With the defaults (1 s, 300 s, 12
    retries) that rides out 12 to 24 minutes of database outage; then the task fails, logged
    as an error with its id, so that a task that can never pass (a statement that always times
    out) stops. Sending it again with the same task id runs it once. These retries are counted
    apart from Celery's ``request.retries`` (which also counts a copy's unlimited retries while
    its original runs), in the message header ``DB_RETRIES_HEADER``.
    Inside a caller's transaction (an eager ``apply()`` in an atomic block) the error is
    raised as it is: the transaction is the caller's, and so is the retry.
    """

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
    #: Retries after a database error of operation before the task fails (see above).
    idempotency_db_max_retries: int = 12
    #: Countdown of the first such retry, in seconds; it doubles with every retry ...
    idempotency_db_retry_backoff: float = 1.0
    #: ... up to this many seconds. Keep it below a Redis/SQS visibility timeout.
    idempotency_db_retry_backoff_max: float = 300.0

    def idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key this run is deduplicated by; the task id unless overridden."""
        return str(self.request.id)

    def idempotency_reference(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """A business reference that only one key may use (e.g. ``"order:42"``)."""
        return None

    def idempotency_db_retry_countdown(self, retries: int) -> float:
        """Seconds before the retry that follows ``retries`` earlier ones: between half of
        ``backoff * 2 ** retries`` (capped at ``backoff_max``) and all of it."""
        ceiling: float = min(
            self.idempotency_db_retry_backoff_max,
            self.idempotency_db_retry_backoff * 2 ** min(retries, 64),
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

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
            # the retry finds either the stored result or a released key. No limit: the key
            # is held only as long as the original's transaction (or, after a connection
            # reset, its orphaned session) lasts. Celery reads max_retries=None as the task's
            # max_retries (3 by default), not as "no limit".
            raise self.retry(
                exc=exc, countdown=self.idempotency_retry_countdown, max_retries=sys.maxsize
            ) from exc
        except RETRIED_DATABASE_ERRORS as exc:
            if any(c.in_atomic_block for c in connections.all(initialized_only=True)):
                raise
            _close_broken_connections()
            headers = dict(self.request.headers or {})
            retries = _count(headers.get(DB_RETRIES_HEADER))
            if retries >= self.idempotency_db_max_retries:
                logger.error(
                    "%s[%s] gave up after %d retries on database errors; its work is not done: "
                    "send the task again with the same id to run it once (%r)",
                    self.name,
                    self.request.id,
                    retries,
                    exc,
                )
                raise
            countdown = self.idempotency_db_retry_countdown(retries)
            raise self.retry(
                exc=exc,
                countdown=countdown,
                max_retries=sys.maxsize,  # the limit is ours, counted in the header
                headers={**headers, DB_RETRIES_HEADER: retries + 1},
            ) from exc
        if outcome.replayed:
            logger.info("%s[%s] already ran: stored result returned", self.name, self.request.id)
        return outcome.result


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
