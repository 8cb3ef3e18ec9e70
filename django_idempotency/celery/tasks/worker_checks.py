"""The check of the app's configuration when a worker starts, where it is final: what would let
an idempotent task's work be lost, logged as warnings."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init

from .brokers import VISIBILITY_TIMEOUT_BROKERS, broker_scheme, redelivery_window
from .task import IdempotentTask

logger = logging.getLogger(__package__)  # django_idempotency.celery.tasks, as before the split


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
    scheme = broker_scheme(app)
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
