"""``IdempotentTask`` after its database connection breaks: retried, not acknowledged as failed.

Run eagerly (``task.apply()``, where Celery re-applies a retry inline) on PostgreSQL; the task's
own backend is terminated from another thread's connection while its transaction is open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import Celery
from django.db import connection, connections, transaction

from django_idempotency.celery.tasks import IdempotentTask
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import call_fingerprint, perform
from tests.testapp.models import Execution

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TASK = "tests.ship_through_faults"


def own_backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(backend: int) -> None:
    """``pg_terminate_backend`` from a connection of another thread, and wait until it is gone."""

    def kill() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
                deadline = time.monotonic() + 10
                while True:
                    cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend])
                    if cursor.fetchone() is None:
                        return
                    assert time.monotonic() < deadline, f"backend {backend} still there"
                    time.sleep(0.01)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(kill).result(timeout=30)


def time_out_a_statement() -> None:
    """A real statement timeout (``QueryCanceled``, an ``OperationalError``)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 10")
        cursor.execute("SELECT pg_sleep(1)")


@dataclass
class Script:
    """What each run of the task does after its write: ``faults[n]`` in run ``n`` (if any)."""

    faults: list[Callable[[], None]] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)


@pytest.fixture
def script() -> Iterator[Script]:
    yield Script()
    connections.close_all()  # a test may leave the default connection broken


@pytest.fixture
def app(script: Script) -> Celery:
    app = Celery("database-errors", broker="memory://", set_as_current=False)

    @app.task(  # type: ignore[untyped-decorator]
        base=IdempotentTask,
        name=TASK,
        shared=False,
        bind=True,
        idempotency_db_max_retries=2,
    )
    def ship(self: IdempotentTask, label: str) -> int:
        run = len(script.runs)
        script.runs.append(self.request.retries)
        execution = Execution.objects.create(label=label)
        if run < len(script.faults):
            script.faults[run]()
        return execution.pk

    return app


def executions(label: str) -> int:
    return Execution.objects.filter(label=label).count()


def records(state: str) -> int:
    return IdempotencyRecord.objects.filter(scope=f"celery:{TASK}", state=state).count()


def terminate_own_backend() -> None:
    terminate(own_backend())


def test_a_task_whose_backend_was_terminated_is_retried_and_runs_once(
    app: Celery, script: Script
) -> None:
    # The backend dies after the task's write, before its transaction commits.
    script.faults = [terminate_own_backend]

    result = app.tasks[TASK].apply(args=["terminated"])

    assert result.get(timeout=10) == Execution.objects.get(label="terminated").pk
    assert script.runs == [0, 1]  # the first run, then one retry
    assert executions("terminated") == 1
    assert (records("completed"), records("in_flight")) == (1, 0)


def test_a_connection_that_breaks_on_every_run_gives_up_after_the_retry_limit(
    app: Celery, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    script.faults = [terminate_own_backend] * 3

    with caplog.at_level(logging.ERROR, logger="django_idempotency.celery.tasks"):
        result = app.tasks[TASK].apply(args=["poison"])

    assert result.failed()
    assert script.runs == [0, 1, 2]  # idempotency_db_max_retries = 2
    assert executions("poison") == 0
    assert (records("completed"), records("in_flight")) == (0, 0)
    assert "gave up after 2 retries" in caplog.text


def test_a_statement_timeout_is_retried(app: Celery, script: Script) -> None:
    script.faults = [time_out_a_statement]

    result = app.tasks[TASK].apply(args=["slow"])

    assert result.successful()
    assert script.runs == [0, 1]
    assert executions("slow") == 1


def fail_with(error: Exception) -> Callable[[], None]:
    def fail() -> None:
        raise error

    return fail


@pytest.mark.parametrize(
    "error",
    [ValueError("business"), KeyError("business")],
)
def test_an_error_of_the_task_itself_is_not_retried(
    app: Celery, script: Script, error: Exception
) -> None:
    script.faults = [fail_with(error)]

    result = app.tasks[TASK].apply(args=["business"])

    assert result.failed()
    assert isinstance(result.result, type(error))
    assert script.runs == [0]
    assert executions("business") == 0


def test_a_database_error_of_the_program_is_not_retried(app: Celery, script: Script) -> None:
    def divide_by_zero() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")  # DataError: retrying cannot help

    script.faults = [divide_by_zero]

    result = app.tasks[TASK].apply(args=["program"])

    assert result.failed()
    assert script.runs == [0]


def test_inside_the_callers_transaction_the_caller_decides(app: Celery, script: Script) -> None:
    # The task's transaction is only a savepoint of the caller's: a retry is the caller's call.
    script.faults = [time_out_a_statement]

    with transaction.atomic():
        result = app.tasks[TASK].apply(args=["nested"])
        assert result.failed()

    assert script.runs == [0]
    assert executions("nested") == 0


def test_the_countdown_doubles_up_to_the_cap_half_of_it_random(app: Celery) -> None:
    task: Any = app.tasks[TASK]
    base, cap = task.idempotency_db_retry_backoff, task.idempotency_db_retry_backoff_max
    for retries in [*range(16), 10_000]:
        ceiling = min(cap, base * 2 ** min(retries, 64))
        for _ in range(20):
            assert ceiling / 2 <= task.idempotency_db_retry_countdown(retries) <= ceiling
    assert task.idempotency_db_retry_countdown(0) <= 1.0
    assert task.idempotency_db_retry_countdown(10_000) >= 150.0


def test_a_connection_that_died_while_idle_is_replaced_for_the_retry(
    app: Celery, script: Script
) -> None:
    # A PgBouncer or PostgreSQL restart between two tasks: the first statement finds it dead.
    terminate_own_backend()
    result = app.tasks[TASK].apply(args=["idle"])

    assert result.successful(), result.traceback
    assert script.runs == [1]  # the first run failed before the task's code, the retry ran it
    assert executions("idle") == 1


def test_a_copy_keeps_retrying_while_the_original_holds_the_key(
    app: Celery, script: Script
) -> None:
    """The original's session may outlive a connection reset on the worker's side (until
    PostgreSQL notices), holding the claim: the retry of the failed run is then in flight for
    as long as that takes, past Celery's default limit of 3 retries, and must not give up."""
    attempts: list[int] = []
    retried, held = threading.Event(), threading.Event()

    class CountedTask(IdempotentTask):
        idempotency_lock_timeout = 0.05

        def get_idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            attempts.append(self.request.retries)
            if len(attempts) > 6:
                retried.set()
            return "held-key"

    name = f"{TASK}.copy"

    @app.task(base=CountedTask, name=name, shared=False)  # type: ignore[untyped-decorator]
    def copy(label: str) -> None:
        script.runs.append(-1)

    def hold() -> None:
        def original() -> str:
            held.set()
            retried.wait(30)
            return "the original's"

        try:
            perform(
                original,
                scope=f"celery:{name}",
                key="held-key",
                fingerprint=call_fingerprint(name, ("held",), {}),
            )
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(hold)
        assert held.wait(30)
        result = copy.apply(args=["held"])
        holder.result(timeout=30)

    assert retried.is_set(), f"the copy gave up after {attempts}"
    assert result.get(timeout=10) == "the original's"
    assert script.runs == []  # the copy never ran the task


def test_retries_spent_waiting_in_flight_do_not_use_up_the_database_error_retries(
    app: Celery, script: Script
) -> None:
    # A copy that waited twice for its original (two RequestInFlight retries, which are
    # unlimited) then meets one broken connection: it must still be retried, not dropped.
    script.faults = [terminate_own_backend]

    result = app.tasks[TASK].apply(args=["waited"], retries=2)  # idempotency_db_max_retries = 2

    assert result.successful(), result.traceback
    assert executions("waited") == 1
