"""Send a Celery task with the transaction that decides it: ``send_on_commit``, ``relay_outbox``
(``celery`` extra; the broker side is ``publishing.py``). Nothing else in the package imports it.

``transaction.on_commit(signature.apply_async)`` loses the task whenever the commit succeeds and
the publish never happens: the commit's acknowledgement is lost (Django then drops its on-commit
callbacks although the database committed), the process is killed right after the commit, or the
broker is unreachable. The stored "202 accepted" is then replayed forever for a task that was never
sent. ``send_on_commit`` writes the message to the outbox in the same transaction instead; it is
published right after the commit and deleted, and whatever was not by ``relay_outbox`` (a beat task
or ``manage.py idempotency_relay_outbox``). A message can so be published twice, never not at all:
the task must be an ``IdempotentTask``, which runs once per task id.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from celery import Celery, Signature
from django.db import DEFAULT_DB_ALIAS, router, transaction

from ..arguments import DEFAULT_MAX_ATTEMPTS, DEFAULT_RELAY_BATCH_SIZE, parse_relay_args
from ..models import OutboxMessage
from ..models.outbox import OutboxMessageQuerySet, OutboxSendError, RelayResult
from .publishing import current_app, publish

__all__ = ["current_app", "publish", "relay_outbox", "send_on_commit"]

logger = logging.getLogger(__name__)

#: Signature options that only make sense in the process that froze the signature: the reply
#: queue of this thread (RPC result backend). The relay may publish from anywhere.
_LOCAL_OPTIONS = frozenset({"task_id", "reply_to"})


def send_on_commit(signature: Signature, *, using: str | None = None) -> str:
    """Write ``signature``'s message in the current transaction; publish it once it commits.

    ``using`` is the database the caller writes to (default: where the router writes
    :class:`OutboxMessage`); the message commits or rolls back with that alias's transaction,
    and must be inside one. Arguments and options must be plain JSON (``TypeError``
    otherwise): the relay rebuilds the message from the row. Returns the task id.

    After the commit the message is published (as ``signature.apply_async()`` would) and its
    row deleted; a publish that fails is logged and the row left for ``relay_outbox``.
    """
    if getattr(signature, "subtask_type", None):
        raise TypeError(
            f"send_on_commit sends one task, not a {signature.subtask_type}: "
            "send its tasks one by one."
        )
    alias = using or router.db_for_write(OutboxMessage) or DEFAULT_DB_ALIAS
    if not transaction.get_connection(alias).in_atomic_block:
        raise RuntimeError(
            f"send_on_commit() needs a transaction on database {alias!r}: outside one the "
            "message would be published whether or not the operation commits. Call it inside "
            "transaction.atomic(using=...) (an idempotent view already runs inside one), or "
            "pass using= the alias your operation writes to."
        )
    task_id = str(signature.freeze().id)
    options = {k: v for k, v in signature.options.items() if k not in _LOCAL_OPTIONS}
    OutboxMessage.objects.using(alias).add(
        task_id=task_id,
        name=signature.task,
        args=signature.args,
        kwargs=signature.kwargs,
        options=options,
    )
    transaction.on_commit(
        functools.partial(_publish_committed, signature.app, task_id, alias), using=alias
    )
    return task_id


def relay_outbox(
    *,
    app: Celery | None = None,
    older_than: float | timedelta | None = None,
    batch_size: int = DEFAULT_RELAY_BATCH_SIZE,
    using: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> RelayResult:
    """Publish every message older than ``older_than`` seconds and delete it; say what it did.

    ``older_than`` defaults to ``IDEMPOTENCY_OUTBOX_RELAY_AFTER``; ``app`` to Celery's current
    app (your project's, once its Celery module is imported); ``using`` to where the router
    writes outbox messages. Batches of ``batch_size`` are each a transaction that locks its
    messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so relays running at once do not
    publish the same message.

    A message whose publish fails on its own (the broker refused it, it cannot be encoded) is
    set aside, counted, and parked after ``max_attempts`` failures; the rest are published.
    When the broker cannot be reached (or does not confirm), the relay stops: what was
    published is deleted, the rest stays, and ``OutboxSendError`` (with ``.sent``) is raised.
    """
    args = parse_relay_args(
        older_than=older_than, batch_size=batch_size, database=using, max_attempts=max_attempts
    )
    messages = OutboxMessage.objects.using(args.database)
    due: OutboxMessageQuerySet = messages.due(args.older_than)
    try:
        done = due.send_each(
            functools.partial(publish, app or current_app()),
            batch_size=args.batch_size,
            max_attempts=args.max_attempts,
        )
    finally:
        messages.report_backlog()  # also when the broker is down: then the backlog grows
    for item in done.set_aside:
        logger.warning(
            "outbox message %r %s after %d failed attempt(s): %s",
            item.task_id,
            "parked" if item.parked else "set aside for the next relay",
            item.attempts,
            item.error,
        )
    return RelayResult(
        database=args.database,
        sent=done.sent,
        set_aside=done.set_aside,
        parked=messages.parked().count(),
    )


def _publish_committed(app: Celery, task_id: str, alias: str) -> None:
    """The on-commit publish. It never raises: the operation has committed and answered."""
    try:
        done = (
            OutboxMessage.objects.using(alias)
            .filter(task_id=task_id)
            .send_each(functools.partial(publish, app), batch_size=1)
        )
    except OutboxSendError as exc:
        logger.warning("%s The relay will send it.", exc, exc_info=exc.__cause__)
        return
    except Exception:
        # A database error after the publish: the row stays, the relay sends it again.
        logger.warning(
            "outbox message %r: could not finish sending it after the commit; the relay "
            "will send it.",
            task_id,
            exc_info=True,
        )
        return
    for item in done.set_aside:
        logger.warning(
            "outbox message %r could not be sent after the commit (%s); it stays in the "
            "outbox for the relay.",
            item.task_id,
            item.error,
        )
