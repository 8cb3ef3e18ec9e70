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

``task`` holds the task class, ``deliveries`` what one delivery does (counted, run once, or
given up), ``retries`` the retries after database errors, ``fingerprint`` the fingerprint of
the arguments, ``brokers`` the broker's redelivery window, ``worker_checks`` the check of the
app's configuration when a worker starts. Every module logs as ``django_idempotency.celery.tasks``.
"""

from .brokers import DEFAULT_VISIBILITY_TIMEOUTS, VISIBILITY_TIMEOUT_BROKERS, redelivery_window
from .deliveries import GAVE_UP_STATUS, TaskAbandoned
from .fingerprint import task_fingerprint
from .retries import DB_RETRIES_HEADER, RETRIED_DATABASE_ERRORS
from .task import IdempotentTask
from .worker_checks import configuration_problems  # also connects the check to worker_init

__all__ = [
    "DB_RETRIES_HEADER",
    "DEFAULT_VISIBILITY_TIMEOUTS",
    "GAVE_UP_STATUS",
    "RETRIED_DATABASE_ERRORS",
    "VISIBILITY_TIMEOUT_BROKERS",
    "IdempotentTask",
    "TaskAbandoned",
    "configuration_problems",
    "redelivery_window",
    "task_fingerprint",
]
