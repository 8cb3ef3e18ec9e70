"""The soak's poison task: it kills the worker process that runs it, every time. Loaded by the
soak's Celery worker only (``--include tests.soak.poison``).

``acks_late`` and ``reject_on_worker_lost`` bring it back after each death; the package's
delivery limit (``IDEMPOTENCY_TASK_MAX_DELIVERIES``) must end that: the delivery after the limit
stores its operation as failed (422 ``task-abandoned``) and acknowledges it, and the queue's
other tasks keep running meanwhile.
"""

from __future__ import annotations

import os
import signal

from django_idempotency.celery.tasks import IdempotentTask
from example_project.celery import app

from .workload import POISON_TASK


class PoisonTask(IdempotentTask):
    #: Its stored failure outlives the run (the purge would take it after the soak's short
    #: TTL, before the checker reads it).
    idempotency_ttl = 24 * 3600


@app.task(base=PoisonTask, name=POISON_TASK)  # type: ignore[untyped-decorator]
def poison(number: int) -> None:
    os.kill(os.getpid(), signal.SIGKILL)
