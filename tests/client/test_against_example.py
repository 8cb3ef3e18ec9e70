"""The client helper against the example project under gunicorn, with the fault proxy dropping
connections mid-request: every logical call has exactly one effect (rows counted in the
database), and the answers that say the request itself is wrong are never retried."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import requests

from django_idempotency.client import GaveUp, Result, RetryPolicy, problem_code
from django_idempotency.client.httpx import AsyncIdempotentClient, IdempotentClient
from django_idempotency.client.requests import IdempotentSession
from django_idempotency.exceptions import KeyMismatch, ReferenceConflict
from tests.e2e.faults.harness import Instance

from .support import GATEWAY_MS, ThreadedProxy

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

RECORDS = "django_idempotency_idempotencyrecord"
# Patient enough for a loaded machine; quick steps, so the test stays short.
POLICY = RetryPolicy(max_attempts=12, max_elapsed=60, base_delay=0.05, max_delay=0.5)


@pytest.fixture
def app(example_app: Instance) -> Instance:
    return example_app


@pytest.fixture
def db(app: Instance) -> Iterator[psycopg.Connection[Any]]:
    with app.server.connect() as conn:
        yield conn


def count(conn: psycopg.Connection[Any], query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def effects(conn: psycopg.Connection[Any], order: int) -> tuple[int, int]:
    """(payments, gateway charges) of ``order``: what one logical payment must leave."""
    return (
        count(conn, "SELECT count(*) FROM shop_payment WHERE order_id = %s", order),
        count(conn, 'SELECT count(*) FROM shop_gatewaycharge WHERE "order" = %s', order),
    )


def session(app: Instance) -> IdempotentSession:
    http = requests.Session()
    http.headers.update(app.server.headers)
    return IdempotentSession(http, policy=POLICY, timeout=30)


def running_transactions(conn: psycopg.Connection[Any]) -> int:
    """Workers inside a request's transaction: the claim, the view and the store commit
    together, so an operation in flight is seen by its open transaction, not by its record."""
    return count(
        conn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state = 'idle in transaction'",
    )


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def new_order(client: IdempotentSession, base: str, item: str) -> int:
    result = client.post(f"{base}/api/orders/", json={"item": item, "quantity": 1})
    assert result.outcome == "done", result.response.text
    return int(result.response.json()["id"])


def test_a_request_cut_before_it_reached_the_server_is_sent_again_and_performed_once(
    app: Instance, db: psycopg.Connection[Any], proxy_to: Callable[[str], ThreadedProxy]
) -> None:
    proxy = proxy_to(app.url)
    client = session(app)
    order = new_order(client, proxy.url, "cut")
    proxy.call(lambda: proxy.proxy.cut_on(lambda chunk: b"POST /api/payments/" in chunk))

    result = client.post(f"{proxy.url}/api/payments/", json={"order": order, "amount": "10.00"})

    assert result.outcome == "done"
    assert result.response.status_code == 201
    assert result.attempts == 2
    assert result.history[0].status is None
    assert not result.replayed  # the first attempt never arrived: the second one ran it
    assert effects(db, order) == (1, 1)
    assert count(db, f"SELECT count(*) FROM {RECORDS} WHERE key = %s", result.key) == 1


def test_an_answer_lost_after_the_charge_is_recovered_by_the_same_key(
    app: Instance, db: psycopg.Connection[Any], proxy_to: Callable[[str], ThreadedProxy]
) -> None:
    proxy = proxy_to(app.url)
    client = session(app)
    order = new_order(client, proxy.url, "lost answer")

    def drop_mid_request() -> None:
        # While the gateway is charging (the record is in flight), every connection dies.
        wait_for(lambda: running_transactions(db) > 0)
        proxy.call(lambda: proxy.proxy.reset(100))

    dropper = threading.Thread(target=drop_mid_request)
    dropper.start()
    result = client.post(f"{proxy.url}/api/payments/", json={"order": order, "amount": "10.00"})
    dropper.join()

    assert result.outcome == "done"
    assert result.response.status_code == 201
    assert result.history[0].status is None  # the connection died under the first attempt
    # The retry waited for the first one to finish, and got its answer.
    assert result.replayed
    assert effects(db, order) == (1, 1)


def test_a_timed_out_attempt_waits_for_the_first_and_gets_its_answer(
    app: Instance, db: psycopg.Connection[Any]
) -> None:
    order = new_order(session(app), app.url, "timeout")
    with httpx.Client(headers=app.server.headers) as http:
        # Shorter than the gateway: the first attempt times out while the server charges.
        client = IdempotentClient(http, policy=POLICY, timeout=GATEWAY_MS / 4000)
        result = client.post(f"{app.url}/api/payments/", json={"order": order, "amount": "5.00"})

    assert result.outcome == "done"
    assert result.response.status_code == 201
    assert result.history[0].error is not None
    assert "Timeout" in result.history[0].error
    assert result.replayed
    assert effects(db, order) == (1, 1)


def test_4xx_answers_about_the_request_itself_are_never_retried(
    app: Instance, db: psycopg.Connection[Any]
) -> None:
    client = session(app)
    base = app.url
    orders_before = count(db, "SELECT count(*) FROM shop_order")

    invalid = client.post(f"{base}/api/orders/", json={"item": "x", "quantity": "many"})
    assert (invalid.response.status_code, invalid.outcome, invalid.attempts) == (400, "refused", 1)

    order = new_order(client, base, "refusals")
    paid = client.post(f"{base}/api/payments/", json={"order": order, "amount": "10.00"})
    assert paid.response.status_code == 201

    # The same key with another body: 422 mismatch, once.
    mismatch = client.post(
        f"{base}/api/payments/", json={"order": order, "amount": "11.00"}, key=paid.key
    )
    assert (mismatch.response.status_code, mismatch.attempts) == (422, 1)
    assert problem_code(mismatch.response.headers, mismatch.response.content) == (
        KeyMismatch.default_code
    )

    # Another key, another body, the same order: 409 reference conflict, once.
    conflict = client.post(f"{base}/api/payments/", json={"order": order, "amount": "12.00"})
    assert (conflict.response.status_code, conflict.outcome, conflict.attempts) == (
        409,
        "refused",
        1,
    )
    assert problem_code(conflict.response.headers, conflict.response.content) == (
        ReferenceConflict.default_code
    )
    assert conflict.key != paid.key

    # A key the server cannot read: 400, once.
    bad_key = client.post(f"{base}/api/orders/", json={"item": "x", "quantity": 1}, key="a,b")
    assert (bad_key.response.status_code, bad_key.attempts) == (400, 1)

    assert count(db, "SELECT count(*) FROM shop_order") == orders_before + 1
    assert effects(db, order) == (1, 1)


def test_a_copy_sent_while_the_first_runs_gets_the_first_answer(
    app: Instance, db: psycopg.Connection[Any]
) -> None:
    """The server holds the copy until the first commits (up to IDEMPOTENCY_LOCK_TIMEOUT;
    longer, and it answers 409 in flight, which the client waits out: test_client_adapters)."""
    client = session(app)
    order = new_order(client, app.url, "in flight")
    body = {"order": order, "amount": "7.00"}
    first: list[Result[requests.Response]] = []
    original = threading.Thread(
        target=lambda: first.append(client.post(f"{app.url}/api/payments/", json=body, key="k1"))
    )
    original.start()
    wait_for(lambda: running_transactions(db) > 0)

    copy = client.post(f"{app.url}/api/payments/", json=body, key="k1")
    original.join()

    assert copy.outcome == "done"
    assert copy.replayed
    assert copy.response.content == first[0].response.content
    assert effects(db, order) == (1, 1)


def test_a_storm_of_dropped_connections_leaves_one_effect_per_logical_call(
    app: Instance, db: psycopg.Connection[Any], proxy_to: Callable[[str], ThreadedProxy]
) -> None:
    """Orders and payments from the three adapters at once, while the proxy resets a live
    connection every 150 ms: each order once, each payment and charge once."""
    proxy = proxy_to(app.url)
    stop = threading.Event()

    def nemesis() -> None:
        while not stop.wait(0.15):
            proxy.call(lambda: proxy.proxy.reset(1, active_within=0.5))

    def flow(name: str) -> tuple[Result[Any], Result[Any]]:
        client = session(app)
        order = client.post(f"{proxy.url}/api/orders/", json={"item": name, "quantity": 1})
        pay = client.post(
            f"{proxy.url}/api/payments/",
            json={"order": order.response.json()["id"], "amount": "3.00"},
        )
        return order, pay

    def httpx_flow(name: str) -> tuple[Result[Any], Result[Any]]:
        with httpx.Client(headers=app.server.headers) as http:
            client = IdempotentClient(http, policy=POLICY, timeout=30)
            order = client.post(f"{proxy.url}/api/orders/", json={"item": name, "quantity": 1})
            pay = client.post(
                f"{proxy.url}/api/payments/",
                json={"order": order.response.json()["id"], "amount": "3.00"},
            )
        return order, pay

    async def async_flows(names: list[str]) -> list[tuple[Result[Any], Result[Any]]]:
        async with httpx.AsyncClient(headers=app.server.headers) as http:
            client = AsyncIdempotentClient(http, policy=POLICY, timeout=30)

            async def one(name: str) -> tuple[Result[Any], Result[Any]]:
                order = await client.post(
                    f"{proxy.url}/api/orders/", json={"item": name, "quantity": 1}
                )
                pay = await client.post(
                    f"{proxy.url}/api/payments/",
                    json={"order": order.response.json()["id"], "amount": "3.00"},
                )
                return order, pay

            return list(await asyncio.gather(*(one(name) for name in names)))

    results: dict[str, tuple[Result[Any], Result[Any]]] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, flow(n)))
        for n in ("requests-1", "requests-2", "requests-3")
    ] + [
        threading.Thread(target=lambda n=n: results.__setitem__(n, httpx_flow(n)))
        for n in ("httpx-1", "httpx-2", "httpx-3")
    ]
    names = ["async-1", "async-2", "async-3"]
    threads.append(
        threading.Thread(
            target=lambda: results.update(zip(names, asyncio.run(async_flows(names)), strict=True))
        )
    )
    chaos = threading.Thread(target=nemesis)
    chaos.start()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        stop.set()
        chaos.join()

    assert len(results) == 9
    retried = 0
    for name, (order, pay) in results.items():
        assert (order.outcome, pay.outcome) == ("done", "done"), name
        assert (order.response.status_code, pay.response.status_code) == (201, 201), name
        order_id = int(order.response.json()["id"])
        assert count(db, "SELECT count(*) FROM shop_order WHERE item = %s", name) == 1, name
        assert effects(db, order_id) == (1, 1), name
        retried += order.attempts + pay.attempts - 2
    assert proxy.proxy.resets > 0
    print(f"storm: {proxy.proxy.resets} resets, {retried} retries over 18 calls")
    assert count(db, f"SELECT count(*) FROM {RECORDS} WHERE state = 'in_flight'") == 0


def test_no_answer_at_all_raises_gave_up_with_the_key_to_resume(
    app: Instance, db: psycopg.Connection[Any]
) -> None:
    client = session(app)
    order = new_order(client, app.url, "gave up")
    body = {"order": order, "amount": "4.00"}
    impatient = IdempotentSession(
        client.session, policy=RetryPolicy(max_attempts=2, base_delay=0.01), timeout=0.05
    )
    with pytest.raises(GaveUp) as gave_up:
        impatient.post(f"{app.url}/api/payments/", json=body)

    # Later, resumed with its key: the answer of the one charge, never a second one.
    resumed = client.post(f"{app.url}/api/payments/", json=body, key=gave_up.value.key)
    assert resumed.outcome == "done"
    assert resumed.response.status_code == 201
    assert gave_up.value.attempts == 2
    assert effects(db, order) == (1, 1)
