"""A gunicorn worker is SIGKILLed while its slow request holds a key: nothing half-done is left,
and the client's retry with the same key runs exactly once."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg
import pytest
import requests

from .conftest import Launch
from .figures import FAULTS, measure
from .harness import (
    Background,
    Instance,
    Tally,
    busy_backends,
    in_flight_records,
    is_replayed,
    json_id,
    lock_waiters,
    pid_with_local_port,
    post,
    rows_by,
    session_exists,
    settle,
    stored_server_errors,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROUNDS = 3
GATEWAY_DELAY_MS = 2000


def holder_worker(app: Instance, conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """The worker whose request sits in an open transaction (the gateway call), and its
    backend: found through the backend's client port and the worker's sockets."""
    [(backend, port)] = wait_for(lambda: busy_backends(conn, "idle in transaction"))
    worker = pid_with_local_port(port, app.worker_pids())
    assert worker is not None, "no worker of this server owns the holding connection"
    return worker, backend


def test_a_worker_killed_while_holding_a_key(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    app = launch(e2e_database_url, name="app", delay_ms=GATEWAY_DELAY_MS)
    tally = Tally()
    with (
        measure(
            "Worker killed holding a key",
            section=FAULTS,
            what=f"{ROUNDS} rounds: a payment whose gateway call takes {GATEWAY_DELAY_MS} ms holds "
            "its key in an open transaction; a copy of it waits on a second worker; the holding "
            "worker is SIGKILLed; the client retries with the same key until it gets an answer.",
        ) as sheet,
        psycopg.connect(e2e_database_url, autocommit=True) as conn,
    ):
        outcomes = []
        for round_ in range(ROUNDS):
            order = post(
                app.url, e2e_token, "/api/orders/", {"item": "x", "quantity": 1}, f"o{round_}"
            )
            assert order.status_code == 201
            tally.requests += 1
            body, key = {"order": json_id(order), "amount": "25.00"}, f"crash-{round_}"

            def pay(body: dict[str, Any] = body, key: str = key) -> requests.Response:
                return post(app.url, e2e_token, "/api/payments/", body, key)

            holder = Background(pay)
            worker, backend = holder_worker(app, conn)
            copy = Background(pay)
            # The copy is queued behind the holder's uncommitted claim before the kill.
            wait_for(lambda: lock_waiters(conn))
            os.kill(worker, signal.SIGKILL)
            sheet.processes_killed += 1

            holder.join()
            tally.saw(holder.response, holder.error)
            # The dead worker's session ends and its transaction is rolled back at once.
            wait_for(lambda b=backend: not session_exists(conn, b))
            copy.join()
            tally.saw(copy.response, copy.error)
            retry = settle(
                [app.url],
                e2e_token,
                "/api/payments/",
                body,
                key,
                tally=tally,
                deadline=time.monotonic() + 30,
            )
            again = pay()
            tally.saw(again)
            outcomes.append((holder, copy, retry, again, json_id(order)))

        payments = rows_by(conn, "SELECT order_id, count(*) FROM shop_payment GROUP BY order_id")
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
        sheet.requests = tally.requests
        sheet.operations = ROUNDS
        sheet.lost = sum(1 for *_, order in outcomes if payments.get(order, 0) == 0)
        sheet.duplicated = sum(max(0, count - 1) for count in payments.values())
        sheet.server_errors = tally.server_errors
        sheet.unclean_server_errors = tally.unclean_server_errors
        sheet.notes["answers"] = dict(sorted(tally.statuses.items()))

        for holder, copy, retry, again, order in outcomes:
            # The killed worker never answered; the connection just dropped.
            assert holder.response is None, holder.response
            assert isinstance(holder.error, requests.ConnectionError), holder.error
            assert retry is not None
            assert retry.status_code == 201, retry.text
            assert again.status_code == 201
            assert is_replayed(again)
            assert again.content == retry.content
            if copy.response is not None and copy.response.status_code == 201:
                # The waiting copy took over the released key and ran: the retry replays it.
                assert not is_replayed(copy.response)
                assert retry.content == copy.response.content
            assert payments[order] == 1
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
        assert stored_errors == 0
        # The master replaced every killed worker.
        wait_for(lambda: len(app.worker_pids()) == 4)
        assert app.process.poll() is None
