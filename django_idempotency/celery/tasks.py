"""Exactly-once Celery tasks: ``@app.task(base=IdempotentTask)``. Needs the ``celery`` extra.

Celery delivers at least once (``acks_late`` redelivers the task of a dead worker, a visibility
timeout redelivers one still running). The task's writes, its claim and its result commit in one
transaction through ``django_idempotency.once``, so a redelivered copy whose first run committed
returns the stored result without running, one whose first run died runs again, and one that
arrives while the original still runs waits ``idempotency_lock_timeout`` seconds, then answers from
storage or retries later with Celery's own ``retry(countdown=...)``: it never runs twice.

It is not "never dropped": a task ends failed, and its message is acknowledged, when its own
code raises; when its key, scope or reference cannot be stored; after
``idempotency_db_max_retries`` retries on database errors of operation (a broken connection, a
lock or statement timeout; each rolled the run back and is retried with a capped exponential
backoff first); and when ``idempotency_max_deliveries`` deliveries in a row never reported back
(a task that kills its worker), which is stored as a failed operation, visible in the admin.
Sending the message again with the same task id then answers the stored failure; send it with a
new id to run it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import random
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init
from django.db import Error, InterfaceError, OperationalError, connections
from django.utils import timezone
from kombu import serialization
from kombu.utils.json import dumps as kombu_json

from ..conf import app_settings, as_timedelta
from ..core.fingerprint import canonical_json
from ..core.operation import Operation
from ..core.policy import warn_deprecated
from ..core.problems import problem_document, problem_response
from ..exceptions import RequestInFlight
from ..models import TaskDelivery
from ..once import (
    Outcome,
    answer,
    json_view,
    operation,
    refuse_non_string_keys,
)

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
#: Seconds after which kombu redelivers an unacknowledged message when the app sets no
#: ``visibility_timeout`` (kombu's own defaults).
DEFAULT_VISIBILITY_TIMEOUTS = {"redis": 3600, "rediss": 3600, "sentinel": 3600, "sqs": 1800}
#: Status of the stored failure of a task that gave up (a 5xx would not be stored).
GAVE_UP_STATUS = 422
#: Old names of the task's options and hooks, still honoured: what each became.
_DEPRECATED = {
    "idempotency_wait": "idempotency_lock_timeout",
    "idempotency_key": "get_idempotency_key",
    "idempotency_reference": "get_idempotency_reference",
}


class TaskAbandoned(Exception):
    """The task's operation is stored as failed; every later delivery of it answers this.

    ``problem`` is the stored RFC 9457 document (``type`` ends in ``#task-abandoned``).
    """

    def __init__(self, detail: str, problem: dict[str, Any] | None = None) -> None:
        super().__init__(detail)  # one argument: result backends rebuild it from its args
        self.problem = problem or {}


def task_fingerprint(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], serializer: str = "json"
) -> str:
    """SHA-256 of the task name and its arguments in the form the message carries them.

    With JSON (Celery's default) that is kombu's own encoding, which carries ``Decimal``,
    ``datetime``, ``date``, ``time``, ``UUID`` and bytes as typed values and decodes them back,
    so a redelivery re-encodes to the same document; its members are then put in key order.
    With another serializer, the bytes it writes for them (never a false match: at worst two
    equal calls differ, a refusal). Raises what the serializer raises for what it cannot carry.
    """
    document = [name, list(args), kwargs]
    if serializer == "json":
        # The wire has string keys only; an eager call may not, and JSON would merge {1: x}
        # and {"1": x}.
        refuse_non_string_keys(document)
        canonical = canonical_json(kombu_json(document).encode())  # type: ignore[no-untyped-call]
        if canonical is not None:
            return hashlib.sha256(canonical).hexdigest()
    content_type, encoding, payload = serialization.dumps(  # type: ignore[no-untyped-call]
        document, serializer=serializer
    )
    digest = hashlib.sha256(f"{content_type};{encoding}\0".encode())
    digest.update(payload if isinstance(payload, bytes) else str(payload).encode())
    return digest.hexdigest()


def redelivery_window(app: Celery) -> timedelta:
    """How long after a delivery the broker may deliver the same message again by itself.

    Redis and SQS redeliver an unacknowledged message once ``visibility_timeout`` passes (the
    app's, else kombu's default); RabbitMQ does it as soon as the consumer's channel closes.
    """
    scheme = str(app.conf.broker_url or "").split(":", 1)[0]
    if scheme not in VISIBILITY_TIMEOUT_BROKERS:
        return timedelta(0)
    options = app.conf.broker_transport_options or {}
    seconds = options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUTS.get(scheme, 3600))
    return timedelta(seconds=float(seconds))


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
            outcome = self._deliver(args, kwargs)
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
        if outcome.status >= 400:
            raise TaskAbandoned(str(outcome.result.get("detail")), outcome.result)
        if outcome.replayed:
            logger.info("%s[%s] already ran: stored result returned", self.name, self.request.id)
        return outcome.result

    def _deliver(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
        """Count this delivery, then run the task once, or store its failure past the limit."""
        try:
            fingerprint = task_fingerprint(self.name, args, kwargs, self.serializer or "json")
        except Exception as exc:
            if self.request.is_eager:
                raise  # run in the caller's process: the caller gets the error, nothing is lost
            # On a worker: not acknowledged and lost, but stored as failed, under a fingerprint
            # of the task's name (a redelivery answers the same failure).
            prepared = self._operation(args, kwargs, _unfingerprintable(self.name))
            return self._abandon(prepared, f"its arguments cannot be fingerprinted ({exc!r})")
        prepared = self._operation(args, kwargs, fingerprint)
        forget = _forgetter(prepared)
        deliveries = TaskDelivery.objects.count_delivery(
            prepared.database,
            scope=prepared.scope,
            key=prepared.key,
            now=timezone.now(),
            lifetime=prepared.ttl,
        )
        limit = self.idempotency_delivery_limit()
        if deliveries > limit:
            return self._abandon(
                prepared,
                f"it was delivered {deliveries - 1} times without finishing (its worker died, "
                f"or was killed, each time); the limit is {limit} (idempotency_max_deliveries, "
                "IDEMPOTENCY_TASK_MAX_DELIVERIES)",
            )

        def run() -> Any:
            # Removed with the run's commit: a run that dies before it keeps the count.
            forget(quietly=False)
            return self.run(*args, **kwargs)

        try:
            outcome = answer(prepared, json_view(run))
        except BaseException:
            forget(quietly=True)  # this process survived the delivery
            raise
        if outcome.replayed:
            forget(quietly=True)
        return outcome

    def _operation(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], fingerprint: str
    ) -> Operation:
        # Overrides of the hooks' deprecated names (``idempotency_key`` ...) still count.
        key = getattr(self, "idempotency_key", self.get_idempotency_key)
        reference = getattr(self, "idempotency_reference", self.get_idempotency_reference)
        return operation(
            scope=f"celery:{self.name}",
            key=key(args, kwargs),
            fingerprint=fingerprint,
            reference=reference(args, kwargs),
            database=self.idempotency_database,
            ttl=self.idempotency_lifetime(),
            lock_timeout=self.get_idempotency_lock_timeout(),
            method="TASK",
        )

    def _abandon(self, prepared: Operation, why: str) -> Outcome:
        """Store the operation as failed (unless a run of it was stored): every later delivery
        answers that, and this one fails, so the broker's message is acknowledged."""
        document = problem_document(
            status=GAVE_UP_STATUS,
            code="task-abandoned",
            title="The task was given up",
            detail=(
                f"{self.name}[{self.request.id}] was not run: {why}. Its operation is stored "
                "as failed; send it with a new task id to run it."
            ),
            task=self.name,
            task_id=str(self.request.id),
        )
        logger.error("%s", document["detail"])
        # Stored whatever IDEMPOTENCY_RELEASE_STATUS_CODES says: this status means "given up".
        stored = dataclasses.replace(prepared, release_status_codes=frozenset())
        outcome = answer(stored, lambda: problem_response(document))
        _forgetter(prepared)(quietly=True)
        return outcome


def _unfingerprintable(name: str) -> str:
    return hashlib.sha256(f"unfingerprintable\0{name}".encode()).hexdigest()


def _forgetter(prepared: Operation) -> Callable[..., None]:
    def forget(*, quietly: bool) -> None:
        method = TaskDelivery.objects.forget_quietly if quietly else TaskDelivery.objects.forget
        method(prepared.database, scope=prepared.scope, key=prepared.key)

    return forget


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
        problems.extend(f"{name}: {problem}" for problem in _lifetime_problems(task))
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


def _lifetime_problems(task: IdempotentTask) -> list[str]:
    """A delivery limit or lifetime the task cannot work with, and countdowns the broker
    would cut short by delivering the retry again."""
    try:
        limit = task.idempotency_delivery_limit()
        lifetime = task.idempotency_lifetime()
    except (TypeError, ValueError) as exc:
        return [f"idempotency_max_deliveries or the TTL is not a number ({exc})."]
    problems: list[str] = []
    if limit < 1:
        problems.append(
            f"the delivery limit is {limit}: no delivery could run; set "
            "idempotency_max_deliveries (or IDEMPOTENCY_TASK_MAX_DELIVERIES) to 1 or more."
        )
    window = redelivery_window(task.app)
    if lifetime <= window:
        problems.append(
            f"its TTL is not positive: its records would expire before the broker's redelivery "
            f"window ({window}) ends, and a redelivery after that runs the task again."
        )
    longest = max(task.idempotency_retry_countdown, task.idempotency_db_retry_backoff_max)
    if window and longest >= window.total_seconds():
        problems.append(
            f"a retry countdown of {longest:g} s is not below the visibility timeout "
            f"({window.total_seconds():g} s): the broker delivers the waiting retry again."
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
