"""Database faults under the example project: the request's backend is terminated mid-request,
and PostgreSQL itself is restarted under load. Clients get a clean 5xx, nothing half-done is
stored, and retries after recovery run exactly once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.databases import label, session

from .conftest import Launch, PrivateServer
from .figures import FAULTS, measure
from .harness import (
    Background,
    Payment,
    Tally,
    fill_in_sheet,
    in_flight_records,
    is_problem,
    is_replayed,
    json_id,
    new_order,
    post,
    rows_by,
    settle,
    stored_server_errors,
    wait_for,
)

# Run on MariaDB too (DATABASE_URL=mysql://...).
pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.concurrent_db]

ROUNDS = 3
GATEWAY_DELAY_MS = 1500


def test_the_requests_backend_terminated_mid_request(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    app = launch(e2e_database_url, name="app", delay_ms=GATEWAY_DELAY_MS)
    tally = Tally()
    with (
        measure(
            "Backend terminated mid-request",
            section=FAULTS,
            what=f"{ROUNDS} rounds: while a payment waits {GATEWAY_DELAY_MS} ms on the gateway "
            "inside its transaction, the database server ends its session "
            "(pg_terminate_backend() on PostgreSQL, KILL CONNECTION on MariaDB); the client then "
            "retries with the same key.",
        ) as sheet,
        session(e2e_database_url) as conn,
    ):
        outcomes = []
        for round_ in range(ROUNDS):
            order = new_order(app.url, e2e_token, f"o{round_}")
            tally.requests += 1
            payment = Payment(app.url, e2e_token, order=order, key=f"terminated-{round_}")

            first = Background(payment.send)
            [(backend, _)] = wait_for(conn.in_open_transactions)
            conn.terminate(backend)
            sheet.faults_injected += 1
            wait_for(lambda b=backend: not conn.session_exists(b))
            first.join()
            tally.saw(first.response, first.error)
            retry = payment.settle(tally, seconds=30)
            again = payment.send()
            tally.saw(again)
            outcomes.append((first, retry, again, order))

        payments = rows_by(conn, "SELECT order_id, count(*) FROM shop_payment GROUP BY order_id")
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
        orders = [order for *_, order in outcomes]
        fill_in_sheet(sheet, tally, effects=payments, operations=orders)

        for first, retry, again, order in outcomes:
            # The worker survived and answered: a 5xx, as problem+json.
            assert first.response is not None, first.error
            assert first.response.status_code >= 500
            assert is_problem(first.response), first.response.text[:300]
            assert retry is not None
            assert retry.status_code == 201, retry.text
            assert not is_replayed(retry)  # the terminated attempt left nothing to replay
            assert again.content == retry.content
            assert is_replayed(again)
            assert payments[order] == 1
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
        assert stored_errors == 0


CLIENTS = 8
OPERATIONS_PER_CLIENT = 20
RESTARTS = 2
LOAD_DEADLINE = 90.0
#: How each server goes down: PostgreSQL by a fast shutdown, MariaDB killed outright.
RESTART = {
    "postgresql": (
        "fast",
        "PostgreSQL restarted under load",
        "a private PostgreSQL cluster, which is restarted {restarts} times (fast shutdown: "
        "sessions terminated, open transactions rolled back)",
    ),
    "mariadb": (
        "immediate",
        "MariaDB killed under load",
        "a private MariaDB server, which is SIGKILLed and started again {restarts} times (no "
        "shutdown at all: InnoDB's crash recovery at the next start)",
    ),
}


def test_the_database_server_restarted_under_load(
    private_server: PrivateServer, private_database: tuple[str, str], launch: Launch
) -> None:
    url, token = private_database
    mode, title, how = RESTART[label(url)]
    apps = [launch(url, name=f"app-{n}", token=token, delay_ms=50) for n in (1, 2)]
    urls = [app.url for app in apps]
    # Each client makes at least OPERATIONS_PER_CLIENT operations and goes on until the last
    # restart is done, so every restart meets load however fast the machine is.
    operations: list[tuple[str, dict[str, object]]] = []
    tally = Tally()
    finals: dict[str, requests.Response | None] = {}
    started = threading.Event()
    restarts_done = threading.Event()

    def client(index: int) -> None:
        started.set()
        deadline = time.monotonic() + LOAD_DEADLINE
        n = 0
        while n < OPERATIONS_PER_CLIENT or not restarts_done.is_set():
            if time.monotonic() > deadline:
                break
            key, body = f"load-{index}-{n}", {"item": f"load {index}-{n}", "quantity": 1}
            operations.append((key, body))
            n += 1
            # Each client starts on its own server and moves on after a failure.
            order = urls[index % 2 :] + urls[: index % 2]
            finals[key] = settle(
                order, token, "/api/orders/", body, key, tally=tally, deadline=deadline
            )

    with measure(
        title,
        section=FAULTS,
        what=f"{CLIENTS} clients each create at least {OPERATIONS_PER_CLIENT} orders (one key "
        f"each) on two gunicorn instances against {how.format(restarts=RESTARTS)} while they run; "
        "every client retries its key until it gets an answer.",
    ) as sheet:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            futures = [pool.submit(client, index) for index in range(CLIENTS)]
            started.wait(10)
            try:
                for _ in range(RESTARTS):
                    time.sleep(0.5)
                    private_server.restart(mode)
                    sheet.faults_injected += 1
            finally:
                restarts_done.set()
            for future in futures:
                future.result(timeout=LOAD_DEADLINE + 30)

        # Every key once more, after recovery: each must replay its final answer.
        replays = {
            key: post(urls[n % 2], token, "/api/orders/", body, key)
            for n, (key, body) in enumerate(operations)
        }
        for response in replays.values():
            tally.saw(response)

        with session(url) as conn:
            rows = rows_by(conn, "SELECT item, count(*) FROM shop_order GROUP BY item")
            order_of = dict(conn.execute("SELECT item, id FROM shop_order").fetchall())
            sheet.stuck_records = in_flight_records(conn)
            stored_errors = stored_server_errors(conn)
        unanswered = [key for key, _ in operations if finals.get(key) is None]
        items = [body["item"] for _, body in operations]
        fill_in_sheet(sheet, tally, effects=rows, operations=items)
        sheet.notes["unanswered operations"] = len(unanswered)

        assert unanswered == []
        for key, body in operations:
            final = finals[key]
            assert final is not None
            assert final.status_code == 201, (key, final.text)
            assert json_id(final) == order_of[body["item"]]
            assert replays[key].status_code == 201
            assert is_replayed(replays[key])
            assert replays[key].content == final.content
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
        assert stored_errors == 0
        # The restarts must have hit requests, or this test proved nothing.
        assert tally.server_errors + tally.dropped > 0, tally.statuses
        # Where a worker could still answer, the 5xx is a problem document.
        assert tally.unclean_server_errors == 0, tally.statuses
