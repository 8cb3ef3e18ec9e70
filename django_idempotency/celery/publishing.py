"""The broker side of the outbox (``celery/outbox.py``): ``publish`` one message, return once
the broker has it; ``current_app``, the Celery app that publishes.

A row goes only once the broker has taken the message: on AMQP (``amqp://``, ``pyamqp://``) the
outbox publishes on connections of its own with publisher confirms on (``confirm_publish``),
so a publish returns once RabbitMQ acknowledged the message, not once its bytes were written
to a socket that may already be dead. Redis answers each publish (an ``LPUSH``) before it
returns anyway. A failure is told apart: the broker out of reach (:class:`OutboxUnavailable`:
the relay stops) or this message's own fault (it is set aside).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from celery import Celery
from django.core.exceptions import ImproperlyConfigured
from kombu import pools
from kombu.connection import Connection
from kombu.messaging import Producer

from ..models import OutboxMessage
from ..models.outbox import OutboxUnavailable

#: Seconds a publish waits for the broker's confirm; past it the message stays for the relay
#: (RabbitMQ holds back confirms while a memory or disk alarm blocks publishers).
CONFIRM_TIMEOUT = 10.0
#: The kombu transports (py-amqp) that publish asynchronously unless confirms are on.
_CONFIRMING_TRANSPORTS = frozenset({"py-amqp"})


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
