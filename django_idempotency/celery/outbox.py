"""Send a Celery task with the transaction that decides it: ``send_on_commit``, ``relay_outbox``.

Needs the ``celery`` extra; nothing else in the package imports this module.

``transaction.on_commit(signature.apply_async)`` loses the task whenever the commit succeeds
and the publish never happens: the commit's acknowledgement is lost (Django then drops its
on-commit callbacks although the database committed), the process is killed right after the
commit, or the broker is unreachable. The stored "202 accepted" is then replayed forever for a
task that was never sent. ``send_on_commit`` writes the message to the outbox in the same
transaction instead; it is published right after the commit and deleted, and whatever was not
is published by ``relay_outbox`` (a beat task or ``manage.py idempotency_relay_outbox``).
A message can so be published twice, never not at all: the task must be an ``IdempotentTask``
(``celery/tasks/``), which runs once per task id.

A row goes only once the broker has taken the message: on AMQP (``amqp://``, ``pyamqp://``) the
outbox publishes on connections of its own with publisher confirms on (``confirm_publish``),
so a publish returns once RabbitMQ acknowledged the message, not once its bytes were written
to a socket that may already be dead. Redis answers each publish (an ``LPUSH``) before it
returns anyway.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from celery import Celery, Signature
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, router, transaction
from kombu import pools
from kombu.connection import Connection
from kombu.messaging import Producer

from ..arguments import DEFAULT_MAX_ATTEMPTS, DEFAULT_RELAY_BATCH_SIZE, parse_relay_args
from ..models import OutboxMessage
from ..models.outbox import (
    OutboxMessageQuerySet,
    OutboxSendError,
    OutboxUnavailable,
    RelayResult,
)

logger = logging.getLogger(__name__)

#: Signature options that only make sense in the process that froze the signature: the reply
#: queue of this thread (RPC result backend). The relay may publish from anywhere.
_LOCAL_OPTIONS = frozenset({"task_id", "reply_to"})

#: Seconds a publish waits for the broker's confirm; past it the message stays for the relay
#: (RabbitMQ holds back confirms while a memory or disk alarm blocks publishers).
CONFIRM_TIMEOUT = 10.0
#: The kombu transports (py-amqp) that publish asynchronously unless confirms are on.
_CONFIRMING_TRANSPORTS = frozenset({"py-amqp"})


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
    publisher = app or current_app()
    messages = OutboxMessage.objects.using(args.database)
    due: OutboxMessageQuerySet = messages.due(args.older_than)
    done = due.send_each(
        functools.partial(publish, publisher),
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
    )
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


def publish(app: Celery, message: OutboxMessage) -> None:
    """Publish ``message`` as ``signature.apply_async()`` would; return once the broker has it.

    Through the task's own ``apply_async`` when ``app`` knows the task (its options and
    overrides apply, and ``task_always_eager`` runs it here, as in tests); by name with
    ``app.send_task`` when the task lives in another code base. On AMQP the publish waits for
    the broker's confirm. A broker that cannot be reached, or does not confirm, raises
    :class:`OutboxUnavailable`; anything else is this message's own failure.
    """
    task = app.tasks.get(message.name)
    if task is not None and app.conf.task_always_eager:
        task.apply_async(message.args, message.kwargs, task_id=message.task_id, **message.options)
        return
    with _confirming_producer(app) as producer:
        options: dict[str, Any] = {"confirm_timeout": CONFIRM_TIMEOUT, **message.options}
        try:
            if task is not None:
                task.apply_async(
                    message.args,
                    message.kwargs,
                    task_id=message.task_id,
                    producer=producer,
                    **options,
                )
            else:
                app.send_task(
                    message.name,
                    message.args,
                    message.kwargs,
                    task_id=message.task_id,
                    producer=producer,
                    **options,
                )
        except Exception as exc:
            unavailable = _unavailable(exc, producer.connection)
            # The channel may still owe a confirm: one owed for this message must not be taken
            # for the next message's. The connection is dropped; the next publish reconnects.
            with contextlib.suppress(Exception):
                producer.connection.collect()
            if unavailable:
                raise OutboxUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise


@contextlib.contextmanager
def _confirming_producer(app: Celery) -> Iterator[Producer]:
    """A producer from the outbox's own pool: the app's broker, with publisher confirms on.

    kombu keeps one pool per broker URL and transport options, so these connections are
    the outbox's and the app's other publishes keep theirs (and their speed).
    """
    connection = app.connection_for_write()
    transport = connection.transport
    if transport.driver_name in _CONFIRMING_TRANSPORTS:
        connection = app.connection_for_write(transport_options={"confirm_publish": True})
    elif transport.driver_type == "amqp":
        # librabbitmq (which kombu picks for amqp:// when it is installed) cannot wait for a
        # confirm: refused, so the messages stay rather than go unconfirmed.
        raise OutboxUnavailable(
            f"the {transport.driver_name} transport cannot confirm publishes; the outbox "
            "needs py-amqp: use a pyamqp:// broker URL."
        )
    pool = pools.producers[connection]
    with pool.acquire(block=True) as producer:
        yield producer


def _unavailable(error: BaseException, connection: Connection) -> bool:
    """Whether ``error`` (or what caused it) says the broker is out of reach, not the message
    at fault: a connection error, a timeout, a confirm refused (``basic.nack``). A connection
    the broker closed over a frame of this message (``FRAME_ERROR``: a header larger than the
    frame size) is the message's fault: it would stop every relay at the same message."""
    kinds = tuple(connection.connection_errors) + tuple(connection.recoverable_connection_errors)
    chain = list(_causes(error))
    if any(getattr(cause, "reply_code", None) in _REFUSED_FRAME_CODES for cause in chain):
        return False
    return any(isinstance(cause, kinds) for cause in chain)


#: AMQP replies that blame the frames the client sent (frame-error, syntax-error).
_REFUSED_FRAME_CODES = frozenset({501, 502})


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def current_app() -> Celery:
    """Celery's current app; refused when it is only Celery's unconfigured fallback."""
    from celery import current_app as proxy

    app: Celery = proxy._get_current_object()
    # Celery makes this fallback when no app was created in the process: it would publish to
    # amqp://localhost with none of the project's settings.
    if app.main == "default":
        raise ImproperlyConfigured(
            "No Celery app is loaded: import your project's Celery app before relaying the "
            "outbox (Django projects do so in the project package's __init__.py: "
            "`from .celery import app as celery_app`)."
        )
    return app


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
