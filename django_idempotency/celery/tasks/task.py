"""``IdempotentTask``, the Celery door: its options, its hooks, and what a delivery answers."""

from __future__ import annotations

import logging
import random
import sys
from datetime import timedelta
from typing import Any

from celery import Task

from ...conf import app_settings, as_timedelta
from ...core.policy import warn_deprecated
from ...exceptions import RequestInFlight
from .brokers import redelivery_window
from .deliveries import TaskAbandoned, deliver
from .retries import RETRIED_DATABASE_ERRORS, database_retry

logger = logging.getLogger(__package__)  # django_idempotency.celery.tasks, as before the split

#: Old names of the task's options and hooks, still honoured: what each became.
_DEPRECATED = {
    "idempotency_wait": "idempotency_lock_timeout",
    "idempotency_key": "get_idempotency_key",
    "idempotency_reference": "get_idempotency_reference",
}


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
    #: Seconds a copy waits for a running original before it retries later; default
    #: ``IDEMPOTENCY_LOCK_TIMEOUT`` (5), the option every door calls ``lock_timeout``.
    idempotency_lock_timeout: float | None = None
    #: Database alias of the task's record, beside the task's writes; default: the router's
    #: answer for the record model.
    idempotency_database: str | None = None
    #: Countdown of that retry, in seconds.
    idempotency_retry_countdown: float = 10.0
    #: How long the result is replayed (seconds or a timedelta) after the broker's redelivery
    #: window (``idempotency_lifetime()``); default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: Any = None
    #: Retries after a database error of operation before the task fails (see above).
    idempotency_db_max_retries: int = 12
    #: Countdown of the first such retry, in seconds; it doubles with every retry ...
    idempotency_db_retry_backoff: float = 1.0
    #: ... up to this many seconds. Keep it below a Redis/SQS visibility timeout.
    idempotency_db_retry_backoff_max: float = 300.0
    #: Deliveries that may start without finishing before the operation is stored as failed
    #: (see the module docstring); ``None``: ``IDEMPOTENCY_TASK_MAX_DELIVERIES`` (5).
    idempotency_max_deliveries: int | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old, new in _DEPRECATED.items():
            if old in cls.__dict__:
                warn_deprecated(f"{cls.__qualname__}.{old}", new)

    def get_idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key this run is deduplicated by; the task id unless overridden."""
        return str(self.request.id)

    def get_idempotency_reference(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | None:
        """A business reference that only one key may use (e.g. ``"order:42"``)."""
        return None

    def get_idempotency_lock_timeout(self) -> float:
        """``idempotency_lock_timeout``, else ``IDEMPOTENCY_LOCK_TIMEOUT``."""
        own = self.idempotency_lock_timeout
        if own is None:
            own = getattr(self, "idempotency_wait", None)  # the deprecated name
        return app_settings.LOCK_TIMEOUT if own is None else float(own)

    def idempotency_db_retry_countdown(self, retries: int) -> float:
        """Seconds before the retry that follows ``retries`` earlier ones: between half of
        ``backoff * 2 ** retries`` (capped at ``backoff_max``) and all of it."""
        ceiling: float = min(
            self.idempotency_db_retry_backoff_max,
            self.idempotency_db_retry_backoff * 2 ** min(retries, 64),
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def idempotency_lifetime(self) -> timedelta:
        """How long the record answers redeliveries: the TTL, counted from the end of the
        broker's redelivery window (``redelivery_window``), so that a message the broker
        brings back after the longest wait it may take still finds the record."""
        ttl = app_settings.TTL if self.idempotency_ttl is None else self.idempotency_ttl
        return as_timedelta(ttl) + redelivery_window(self.app)

    def idempotency_delivery_limit(self) -> int:
        """``idempotency_max_deliveries``, else ``IDEMPOTENCY_TASK_MAX_DELIVERIES``."""
        limit = self.idempotency_max_deliveries
        return app_settings.TASK_MAX_DELIVERIES if limit is None else int(limit)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)  # a plain function call, not a delivery
        try:
            outcome = deliver(self, args, kwargs)
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
            retry = database_retry(self, exc)
            if retry is None:
                raise
            raise retry from exc
        if outcome.status >= 400:
            raise TaskAbandoned(str(outcome.result.get("detail")), outcome.result)
        if outcome.replayed:
            logger.info("%s[%s] already ran: stored result returned", self.name, self.request.id)
        return outcome.result
