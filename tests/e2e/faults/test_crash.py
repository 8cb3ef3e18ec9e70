"""A gunicorn worker is SIGKILLed while its slow request holds a key: nothing half-done is left,
and the client's retry with the same key runs exactly once."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from tests.databases import session

from .conftest import Launch
from .figures import FAULTS, measure
from .harness import (
    Background,
    Payment,
    Tally,
    fill_in_sheet,
    holder_worker,
    in_flight_records,
    is_replayed,
    new_order,
    rows_by,
    stored_server_errors,
    wait_for,
)

# Run on MariaDB too (DATABASE_URL=mysql://...).
pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.concurrent_db]

ROUNDS = 3
GATEWAY_DELAY_MS = 2000


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
        session(e2e_database_url) as conn,
    ):
        outcomes = []
        for round_ in range(ROUNDS):
            order = new_order(app.url, e2e_token, f"o{round_}")
            tally.requests += 1
            payment = Payment(app.url, e2e_token, order=order, key=f"crash-{round_}")

            holder = Background(payment.send)
            worker, backend = holder_worker(app, conn)
            copy = Background(payment.send)
            # The copy is queued behind the holder's uncommitted claim before the kill.
            wait_for(conn.lock_waiters)
            os.kill(worker, signal.SIGKILL)
            sheet.processes_killed += 1

            holder.join()
            tally.saw(holder.response, holder.error)
            # The dead worker's session ends and its transaction is rolled back at once.
            wait_for(lambda b=backend: not conn.session_exists(b))
            copy.join()
            tally.saw(copy.response, copy.error)
            retry = payment.settle(tally, seconds=30)
            again = payment.send()
            tally.saw(again)
            outcomes.append((holder, copy, retry, again, order))

        payments = rows_by(conn, "SELECT order_id, count(*) FROM shop_payment GROUP BY order_id")
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
        orders = [order for *_, order in outcomes]
        fill_in_sheet(sheet, tally, effects=payments, operations=orders)

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
