"""The outbox: task messages written in a transaction, sent once it has committed.

Framework-free: what "send" means (a Celery publish, for one) is a callable the caller passes;
``celery/outbox.py`` is the Celery side.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..arguments import DEFAULT_MAX_ATTEMPTS
from ..core import observers
from .batches import delete_rows
from .clock import before, database_now
from .partial_indexes import without_answered

Send = Callable[["OutboxMessage"], None]

#: Characters of a failure kept on the message (an exception's text can be a whole payload).
MAX_ERROR_LENGTH = 2000


class OutboxUnavailable(Exception):
    """Raised by a send when nothing can be sent now (the broker is unreachable, or did not
    confirm the message): the relay stops, and the message counts no attempt against itself.

    Anything else a send raises is the message's own failure: it is set aside (see
    :meth:`OutboxMessageQuerySet.send_each`) and the relay goes on with the rest.
    """


class OutboxSendError(RuntimeError):
    """Nothing could be sent (:class:`OutboxUnavailable`): this message and the rest stay.

    ``sent`` counts the messages sent (and deleted) before it, ``set_aside`` those that failed
    on their own before it; the cause is ``__cause__``.
    """

    def __init__(
        self,
        task_id: str,
        sent: int,
        cause: BaseException,
        set_aside: tuple[SetAside, ...] = (),
    ) -> None:
        super().__init__(
            f"could not send outbox message {task_id!r} ({type(cause).__name__}: {cause}); "
            f"{sent} sent before it, it and the rest stay for the next relay."
        )
        self.task_id = task_id
        self.sent = sent
        self.set_aside = set_aside


@dataclass(frozen=True)
class SetAside:
    """A message whose send failed on its own: kept, skipped for this run, parked at the limit."""

    task_id: str
    attempts: int
    error: str
    parked: bool


@dataclass(frozen=True)
class SendResult:
    """What one ``send_each`` did."""

    sent: int = 0
    set_aside: tuple[SetAside, ...] = ()


@dataclass(frozen=True)
class RelayResult:
    """What one relay did on ``database``; ``parked`` counts every message parked there."""

    database: str
    sent: int
    set_aside: tuple[SetAside, ...]
    parked: int

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON, for a task's result."""
        return {**asdict(self), "set_aside": [asdict(item) for item in self.set_aside]}


def json_only(value: Any, where: str) -> Any:
    """``value`` as plain JSON (tuples become lists); ``TypeError`` naming ``where`` otherwise.

    Exact types only: a dict or str subclass (a Celery ``Signature`` is a dict) would be stored
    as plain JSON and come back as something else, so it is refused rather than changed.
    """
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot hold.")
        return value
    if kind in (list, tuple):
        return [json_only(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise TypeError(f"{where} has the key {key!r}: JSON object keys are strings.")
        return {key: json_only(item, f"{where}[{key!r}]") for key, item in value.items()}
    raise TypeError(
        f"{where} is a {kind.__module__}.{kind.__qualname__}, not plain JSON (None, bool, "
        "int, float, str, list or dict): the outbox stores messages as JSON."
    )


class OutboxMessageQuerySet(models.QuerySet["OutboxMessage"]):
    def add(
        self,
        *,
        task_id: str,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> OutboxMessage:
        """Write a message on this queryset's write alias; refuse values that are not JSON."""
        alias = self._write_alias()
        return self.using(alias).create(  # type: ignore[no-any-return]
            task_id=task_id,
            name=name,
            args=json_only(list(args), "args"),
            kwargs=json_only(dict(kwargs or {}), "kwargs"),
            options=json_only(dict(options or {}), "options"),
            # Dated by the clock the relay judges age by (see due()).
            created_at=database_now(alias),
        )

    def due(self, older_than: timedelta) -> OutboxMessageQuerySet:
        """Messages written longer ago than ``older_than``.

        On PostgreSQL both the message's date and this cutoff come from the database's clock
        (the statement's time), so app servers whose clocks disagree neither hurry the relay
        into racing the on-commit send nor hold it back. Elsewhere (SQLite, for development)
        the app server's clock dates and judges.
        """
        alias = self._write_alias()
        cutoff = before(database_now(alias), older_than)
        return self.using(alias).filter(created_at__lte=cutoff)  # type: ignore[no-any-return]

    def parked(self) -> OutboxMessageQuerySet:
        """Messages the relay has given up on (see :meth:`send_each`)."""
        parked: OutboxMessageQuerySet = self.filter(parked_at__isnull=False)
        return parked

    def backlog(self) -> dict[str, float]:
        """The relay's gauges on this queryset's write alias: the messages waiting to be sent,
        the age of the oldest in seconds (by the app server's clock), and the parked ones.

        One aggregate over the table, which is nearly empty while the broker is up and holds
        what an outage left otherwise."""
        waiting = Q(parked_at__isnull=True)
        found = (
            self.using(self._write_alias())
            .order_by()
            .aggregate(
                waiting=Count("pk", filter=waiting),
                oldest=Min("created_at", filter=waiting),
                parked=Count("pk", filter=~waiting),
            )
        )
        oldest = found["oldest"]
        age = 0.0 if oldest is None else (timezone.now() - oldest).total_seconds()
        return {
            "outbox_backlog_messages": float(found["waiting"]),
            "outbox_oldest_age_seconds": max(age, 0.0),
            "outbox_parked_messages": float(found["parked"]),
        }

    def report_backlog(self) -> None:
        """Tell the observers (``IDEMPOTENCY_METRICS``) the backlog after a relay pass."""
        if observers.observers():
            gauges = {**self.backlog(), "outbox_last_pass_timestamp_seconds": time.time()}
            observers.report_backlog(self._write_alias(), gauges)

    def unpark(self) -> int:
        """Let the relay try these parked messages again, from zero attempts."""
        return self.parked().update(parked_at=None, attempts=0)

    def send_each(
        self, send: Send, *, batch_size: int, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> SendResult:
        """Send every unparked message of this queryset once and delete it.

        Messages go in primary-key order, in batches of ``batch_size``, each batch its own
        transaction on this queryset's write alias that deletes the messages it sent. The
        batch is picked ``FOR UPDATE SKIP LOCKED`` where the database can: a message another
        sender holds is left to it, so two senders never send the same one at once.

        A send that raises :class:`OutboxUnavailable` stops everything: the messages sent
        before it are deleted, it and the rest stay, and :class:`OutboxSendError` is raised.
        Any other exception is the message's own failure: its attempts, error and time are
        recorded, it is parked once it has failed ``max_attempts`` times, and the rest are sent
        (one bad message must not hold up every message behind it).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1.")
        alias = self._write_alias()
        skip_locked = connections[alias].features.has_select_for_update_skip_locked
        total = 0
        set_aside: list[SetAside] = []
        last_pk = 0
        while True:
            failure: tuple[OutboxMessage, Exception] | None = None
            with transaction.atomic(using=alias):
                batch = (
                    self.using(alias).filter(pk__gt=last_pk, parked_at__isnull=True).order_by("pk")
                )
                if skip_locked:
                    batch = batch.select_for_update(skip_locked=True)
                messages = list(batch[:batch_size])
                sent: list[int] = []
                for message in messages:
                    try:
                        send(message)
                    except OutboxUnavailable as exc:
                        failure = (message, exc)
                        break
                    except Exception as exc:
                        set_aside.append(self._set_aside(alias, message, exc, max_attempts))
                        continue
                    sent.append(message.pk)
                if sent and connections[alias].vendor == "mysql":
                    delete_rows(self.model, sent, alias)  # by primary key alone
                elif sent:
                    self.model._default_manager.using(alias).filter(pk__in=sent).delete()
            total += len(sent)
            # Raised only now: inside the block it would roll back the deletes of what was sent.
            if failure is not None:
                unsent, unavailable = failure
                cause = unavailable.__cause__ or unavailable
                raise OutboxSendError(unsent.task_id, total, cause, tuple(set_aside)) from cause
            if len(messages) < batch_size:
                return SendResult(sent=total, set_aside=tuple(set_aside))
            # Keyset paging: a message skipped because someone else holds it is not met again.
            last_pk = messages[-1].pk

    def _set_aside(
        self, alias: str, message: OutboxMessage, error: Exception, max_attempts: int
    ) -> SetAside:
        """Record a failed send on ``message`` (locked by the caller's batch)."""
        attempts = message.attempts + 1
        parked = attempts >= max_attempts
        # A NUL cannot be stored in a PostgreSQL text column.
        text = f"{type(error).__name__}: {error}".replace("\x00", "\\x00")[:MAX_ERROR_LENGTH]
        now = database_now(alias)
        self.model._default_manager.using(alias).filter(pk=message.pk).update(
            attempts=attempts,
            last_error=text,
            last_attempt_at=now,
            parked_at=now if parked else None,
        )
        return SetAside(task_id=message.task_id, attempts=attempts, error=text, parked=parked)

    def _write_alias(self) -> str:
        return self._db or router.db_for_write(self.model)  # type: ignore[attr-defined]


class OutboxMessage(models.Model):
    """A task message written in the transaction of the operation that sends it.

    It commits with the operation's other rows, or not at all; once committed it is sent and
    deleted, right after the commit or, if that send never happens (a lost commit
    acknowledgement, a killed worker, an unreachable broker), by the relay
    (``celery/outbox.py``). A message may so be sent twice, never not at all: the
    receiving task deduplicates by ``task_id``.
    """

    task_id = models.CharField(
        _("task id"),
        max_length=255,
        help_text=_("The id the message is sent with; the receiving task deduplicates by it."),
    )
    name = models.CharField(_("task name"), max_length=255, help_text=_("The task to run."))
    args = models.JSONField(
        _("arguments"), default=list, blank=True, help_text=_("Positional arguments (JSON).")
    )
    kwargs = models.JSONField(
        _("keyword arguments"),
        default=dict,
        blank=True,
        help_text=_("Keyword arguments (JSON)."),
    )
    options = models.JSONField(
        _("options"),
        default=dict,
        blank=True,
        help_text=_("How the message is sent (queue, routing key, priority ...), as JSON."),
    )
    created_at = models.DateTimeField(
        _("created"),
        default=timezone.now,
        help_text=_(
            "When the message was written (the database's clock on PostgreSQL); the relay "
            "sends it once it is older than IDEMPOTENCY_OUTBOX_RELAY_AFTER."
        ),
    )
    attempts = models.PositiveIntegerField(
        _("failed attempts"),
        default=0,
        help_text=_(
            "Publishes of this message that failed for a reason of its own (an unreachable "
            "broker counts none); at the relay's limit the message is parked."
        ),
    )
    last_error = models.TextField(
        _("last error"), blank=True, default="", help_text=_("Why the latest publish failed.")
    )
    last_attempt_at = models.DateTimeField(
        _("last attempt"), null=True, blank=True, help_text=_("When the latest publish failed.")
    )
    parked_at = models.DateTimeField(
        _("parked"),
        null=True,
        blank=True,
        help_text=_(
            "When the relay gave up on this message: it is left alone until an operator "
            "fixes the cause and unparks it (OutboxMessage.objects.parked().unpark())."
        ),
    )

    objects = OutboxMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")
        # No index on created_at: the relay walks the primary key, in which the old messages
        # come first, and the table is nearly empty whenever the broker is up.
        constraints = [
            models.UniqueConstraint(fields=["task_id"], name="idempotency_outbox_task_id_uniq"),
        ]
        indexes = [
            # The parked messages (the admin's filter, the relay's report): few or none.
            models.Index(
                fields=["parked_at"],
                condition=Q(parked_at__isnull=False),
                name="idempotency_outbox_parked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.task_id}]"

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        # models.W036/W037 on MySQL: handled by migration 0008 (partial_indexes.py).
        return without_answered(super().check(**kwargs))
