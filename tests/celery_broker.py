"""The machine's RabbitMQ for the Celery tests (``scripts/bootstrap.sh`` starts it): its URL and
a queue of each test's own. Only Celery tests import this module, so only they need kombu."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from kombu import Connection

AMQP_URL = os.environ.get("CELERY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@contextmanager
def own_queue() -> Iterator[str]:
    """A queue name of its own, deleted afterwards with the direct exchange of the same name
    that Celery declares for it (durable: it would stay on the shared broker)."""
    name = f"idempotency-test-{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(AMQP_URL) as broker:
        broker.default_channel.queue_delete(name)
        broker.default_channel.exchange_delete(name)
