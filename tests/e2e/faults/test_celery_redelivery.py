"""Real Celery workers on RabbitMQ run ``shop.ship_order``, enqueued by the example over HTTP.

The worker is SIGKILLed after the (external) carrier booked and before the task's transaction
committed; RabbitMQ redelivers the unacknowledged message at once and a new worker runs it again:
one shipment and one booking. In the race, two fresh workers get the redelivered message and a
duplicate of it at the same moment: one runs, the other waits and answers from storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from celery import Celery

from tests.celery_broker import AMQP_URL
from tests.e2e.conftest import REPO_ROOT, _project_env

from .conftest import Launch
from .figures import FAULTS, measure
from .harness import Instance, in_flight_records, json_id, post, scalar, wait_for

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

CRASH_WINDOW_MS = 3000
READY_TIMEOUT = 60.0

Worker = Callable[[str], tuple[subprocess.Popen[bytes], Path]]


@pytest.fixture
def start_worker(e2e_database_url: str, queue: str, tmp_path: Path) -> Iterator[Worker]:
    """``start_worker(name)``: one ``celery worker`` (solo pool, so its pid is the one running
    the task) of the example project on this test's queue and database, once it is ready."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = tmp_path / f"worker-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "example_project.celery:app",
                    "worker",
                    "--pool=solo",
                    "--loglevel=INFO",
                    "-Q",
                    queue,
                    "-n",
                    f"{name}-{queue}@localhost",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=REPO_ROOT,
                env=_project_env(
                    e2e_database_url,
                    CELERY_BROKER_URL=AMQP_URL,
                    EXAMPLE_CELERY_QUEUE=queue,
                    EXAMPLE_CARRIER_DELAY_MS=str(CRASH_WINDOW_MS),
                    # libpq's application_name: this worker's sessions in pg_stat_activity.
                    PGAPPNAME=f"worker-{name}",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log_path))
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready." not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
        return process, log_path

    yield start
    for process, log_path in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        print(f"--- {log_path} ---\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def app(e2e_database_url: str, launch: Launch, queue: str) -> Instance:
    """A gunicorn instance of the example that sends its tasks to this test's queue."""
    return launch(
        e2e_database_url,
        name="app",
        env={"CELERY_BROKER_URL": AMQP_URL, "EXAMPLE_CELERY_QUEUE": queue},
    )


def count(conn: psycopg.Connection[Any], table: str, column: str, order: int) -> int:
    return int(scalar(conn, f'SELECT count(*) FROM {table} WHERE "{column}" = %s', [order]))


def shipments(conn: psycopg.Connection[Any], order: int) -> int:
    return count(conn, "shop_shipment", "order_id", order)


def bookings(conn: psycopg.Connection[Any], order: int) -> int:
    return count(conn, "shop_carrierbooking", "order", order)


def completed_runs(conn: psycopg.Connection[Any], task_id: str) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM django_idempotency_idempotencyrecord"
            " WHERE scope = 'celery:shop.ship_order' AND key = %s AND state = 'completed'",
            [task_id],
        )
    )


def ship(app: Instance, token: str, tag: str) -> tuple[int, str]:
    order = post(app.url, token, "/api/orders/", {"item": "parcel", "quantity": 1}, f"o-{tag}")
    assert order.status_code == 201, order.text
    order_id = json_id(order)
    response = requests.post(
        f"{app.url}/api/orders/{order_id}/ship/",
        headers={"Authorization": f"Token {token}", "Idempotency-Key": f"ship-{tag}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return order_id, str(response.json()["task_id"])


@pytest.mark.parametrize("racers", [1, 2])
def test_a_worker_killed_after_the_booking_ships_once(
    racers: int,
    e2e_database_url: str,
    e2e_token: str,
    app: Instance,
    queue: str,
    start_worker: Worker,
) -> None:
    race = racers > 1
    with (
        measure(
            "Celery worker killed after the carrier booked"
            + (", two workers racing the redelivery" if race else ""),
            section=FAULTS,
            what=f"POST /api/orders/{{id}}/ship/ enqueues shop.ship_order on RabbitMQ; the "
            f"worker books the carrier (its own connection), sleeps {CRASH_WINDOW_MS} ms before "
            "committing and is SIGKILLed there; RabbitMQ redelivers to "
            + (
                "two new workers at once: the redelivered message and a duplicate of it "
                "(same task id)."
                if race
                else "a new worker."
            ),
        ) as sheet,
        psycopg.connect(e2e_database_url, autocommit=True) as conn,
    ):
        # All ready before the message is sent, so the redelivery finds them ready at once.
        workers = [start_worker(f"w{index}") for index in range(racers + 1)]
        order, task_id = ship(app, e2e_token, f"{racers}")
        wait_for(lambda: bookings(conn, order) == 1, timeout=60)
        [first] = [
            process
            for process, log in workers
            if f"shop.ship_order[{task_id}] received" in log.read_text(errors="replace")
        ]
        assert shipments(conn, order) == 0
        os.kill(first.pid, signal.SIGKILL)
        sheet.processes_killed = 1
        if race:
            # What a visibility timeout does: a second copy of a message that is in progress.
            sender = Celery("e2e-sender", broker=AMQP_URL, set_as_current=False)
            sender.send_task("shop.ship_order", args=[order], task_id=task_id, queue=queue)

        wait_for(lambda: completed_runs(conn, task_id) == 1, timeout=90)
        # Every copy has been through a worker by now (a waiting copy returns within seconds,
        # a retried one after its countdown): nothing more may appear.
        time.sleep(CRASH_WINDOW_MS / 1000 + 12)
        sheet.operations = 1
        sheet.requests = 3
        found = (shipments(conn, order), bookings(conn, order))
        sheet.lost = int(found[0] == 0)
        sheet.duplicated = max(0, found[0] - 1) + max(0, found[1] - 1)
        sheet.stuck_records = in_flight_records(conn)

        received = sum(
            log.read_text(errors="replace").count(f"shop.ship_order[{task_id}] received")
            for process, log in workers
            if process is not first
        )
        sheet.notes["deliveries after the kill"] = received
        assert first.wait(timeout=10) == -signal.SIGKILL
        # The redelivery, plus the duplicate in the race: each went through a worker.
        assert received >= racers
        assert found == (1, 1)
        booking_key = scalar(
            conn, 'SELECT idempotency_key FROM shop_carrierbooking WHERE "order" = %s', [order]
        )
        assert str(booking_key).startswith("idk_")
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)


def waiting_to_commit(conn: psycopg.Connection[Any], application: str) -> int | None:
    """The backend of ``application`` that wrote the shipment and waits to commit, if any."""
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = %s AND state = 'idle in transaction'"
        """ AND query LIKE 'INSERT INTO "shop_shipment"%%'""",
        [application],
    ).fetchone()
    return None if row is None else int(row[0])


def test_a_worker_whose_database_session_is_terminated_retries_and_ships_once(
    e2e_database_url: str,
    e2e_token: str,
    app: Instance,
    start_worker: Worker,
) -> None:
    with (
        measure(
            "Celery worker's database session terminated after the carrier booked",
            section=FAULTS,
            what="POST /api/orders/{id}/ship/ enqueues shop.ship_order on RabbitMQ; the worker "
            f"books the carrier (its own connection), writes the shipment and sleeps "
            f"{CRASH_WINDOW_MS} ms before committing; pg_terminate_backend() kills its "
            "PostgreSQL session there. The worker lives on: the task raises a database "
            "error, which acks_late alone would acknowledge as failed.",
        ) as sheet,
        psycopg.connect(e2e_database_url, autocommit=True) as conn,
    ):
        _, log = start_worker("w0")
        order, task_id = ship(app, e2e_token, "terminated")
        backend = wait_for(lambda: waiting_to_commit(conn, "worker-w0"), timeout=60)
        assert bookings(conn, order) == 1
        conn.execute("SELECT pg_terminate_backend(%s)", [backend])
        sheet.faults_injected = 1

        failed = f"shop.ship_order[{task_id}] raised unexpected"
        wait_for(
            lambda: completed_runs(conn, task_id) == 1 or failed in log.read_text(errors="replace"),
            timeout=90,
        )
        # A retry would have shown up by now: nothing more may appear.
        time.sleep(CRASH_WINDOW_MS / 1000 + 2)
        sheet.operations = 1
        sheet.requests = 2
        found = (shipments(conn, order), bookings(conn, order))
        sheet.lost = int(found[0] == 0)
        sheet.duplicated = max(0, found[0] - 1) + max(0, found[1] - 1)
        sheet.stuck_records = in_flight_records(conn)
        text = log.read_text(errors="replace")
        sheet.notes["retries"] = text.count(f"shop.ship_order[{task_id}] retry")

        assert found == (1, 1), f"(shipments, bookings) of order {order}: {found}"
        assert completed_runs(conn, task_id) == 1
        assert sheet.notes["retries"] == 1
        assert failed not in text
        booking_key = scalar(
            conn, 'SELECT idempotency_key FROM shop_carrierbooking WHERE "order" = %s', [order]
        )
        assert str(booking_key).startswith("idk_")
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
