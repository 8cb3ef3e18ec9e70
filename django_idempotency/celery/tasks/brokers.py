"""What the broker does by itself: deliver an unacknowledged message again after a visibility
timeout (Redis, SQS), or as soon as the consumer's channel closes (RabbitMQ)."""

from __future__ import annotations

from datetime import timedelta

from celery import Celery

#: Brokers that redeliver an unacknowledged message after ``visibility_timeout`` seconds.
VISIBILITY_TIMEOUT_BROKERS = ("redis", "rediss", "sqs", "sentinel")
#: Seconds after which kombu redelivers an unacknowledged message when the app sets no
#: ``visibility_timeout`` (kombu's own defaults).
DEFAULT_VISIBILITY_TIMEOUTS = {"redis": 3600, "rediss": 3600, "sentinel": 3600, "sqs": 1800}


def broker_scheme(app: Celery) -> str:
    """The scheme of the app's broker URL (``redis``, ``amqp`` ...)."""
    return str(app.conf.broker_url or "").split(":", 1)[0]


def redelivery_window(app: Celery) -> timedelta:
    """How long after a delivery the broker may deliver the same message again by itself.

    Redis and SQS redeliver an unacknowledged message once ``visibility_timeout`` passes (the
    app's, else kombu's default); RabbitMQ does it as soon as the consumer's channel closes.
    """
    scheme = broker_scheme(app)
    if scheme not in VISIBILITY_TIMEOUT_BROKERS:
        return timedelta(0)
    options = app.conf.broker_transport_options or {}
    seconds = options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUTS.get(scheme, 3600))
    return timedelta(seconds=float(seconds))
