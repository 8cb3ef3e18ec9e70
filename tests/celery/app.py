"""The Celery app the task test's worker runs: ``celery -A tests.celery.app worker``.

Configured like a project would be (Django settings, the task module listed in ``imports``);
the broker, result backend and queue come from the environment the test sets.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

REDIS_URL = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
#: The broker; Redis unless a test runs its worker on RabbitMQ.
BROKER_URL = os.environ.get("CELERY_TEST_BROKER_URL", REDIS_URL)

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    broker_url=BROKER_URL,
    result_backend=REDIS_URL,
    # Lets the test see which worker ran the task: proof it did not run in the test itself.
    result_extended=True,
    imports=["django_idempotency.celery.beat", "tests.testapp.celery_tasks"],
    task_default_queue=os.environ.get("CELERY_TEST_QUEUE", "celery"),
    broker_connection_retry_on_startup=True,
)
