"""The example project under gunicorn (4 worker processes) on PostgreSQL, driven over HTTP
by concurrent duplicates: exactly one execution per key and per order, never a 500."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from .conftest import Server

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

REQUEST_TIMEOUT = 30.0


def post(server: Server, path: str, body: dict[str, Any], key: str) -> requests.Response:
    return requests.post(
        f"{server.url}{path}",
        json=body,
        headers={**server.headers, "Idempotency-Key": key},
        timeout=REQUEST_TIMEOUT,
    )


def post_all_at_once(
    server: Server, path: str, requests_: list[tuple[dict[str, Any], str]]
) -> list[requests.Response]:
    """Fire every ``(body, key)`` from its own thread, released together by a barrier."""
    barrier = threading.Barrier(len(requests_), timeout=REQUEST_TIMEOUT)

    def send(body: dict[str, Any], key: str) -> requests.Response:
        barrier.wait()
        return post(server, path, body, key)

    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        futures = [pool.submit(send, body, key) for body, key in requests_]
        return [future.result(timeout=2 * REQUEST_TIMEOUT) for future in futures]


def is_replayed(response: requests.Response) -> bool:
    return response.headers.get("Idempotent-Replayed") == "true"


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["status"] == status
    assert {"type", "title", "detail"} <= document.keys()
    return document


def create_order(server: Server, key: str, item: str = "widget") -> int:
    response = post(server, "/api/orders/", {"item": item, "quantity": 1}, key)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_ten_keys_times_ten_simultaneous_copies_create_one_order_per_key(
    example_server: Server,
) -> None:
    keys = [f"order-{n}" for n in range(10)]
    fired = [({"item": f"item for {key}", "quantity": 2}, key) for key in keys for _ in range(10)]

    responses = post_all_at_once(example_server, "/api/orders/", fired)

    by_key: dict[str, list[requests.Response]] = defaultdict(list)
    for (_, key), response in zip(fired, responses, strict=True):
        by_key[key].append(response)
    for key, answers in by_key.items():
        created = [r for r in answers if r.status_code == 201]
        assert created, f"{key}: no 201 among {[r.status_code for r in answers]}"
        # Every 201 is the original's stored response, byte for byte.
        assert {r.content for r in created} == {created[0].content}, key
        assert {r.headers["Location"] for r in created} == {created[0].headers["Location"]}
        assert sum(not is_replayed(r) for r in created) == 1, key
        # The rest waited longer than the lock timeout: "try again", nothing else.
        for response in answers:
            if response.status_code != 201:
                assert_problem(response, 409)
                assert int(response.headers["Retry-After"]) >= 1
    with example_server.connect() as conn:
        rows = conn.execute("SELECT id, item FROM shop_order ORDER BY id").fetchall()
    assert sorted(item for _, item in rows) == sorted(f"item for {key}" for key in keys)
    ids = {json.loads(by_key[key][0].content)["item"]: None for key in keys}
    assert len(ids) == len(keys)
    stored_ids = {
        key: next(r for r in by_key[key] if r.status_code == 201).json()["id"] for key in keys
    }
    assert sorted(stored_ids.values()) == sorted(row_id for row_id, _ in rows)


@pytest.mark.parametrize("gateway_delay_ms", [300])
def test_eight_keys_paying_one_order_with_a_slow_gateway_make_one_payment(
    example_server: Server,
) -> None:
    order_id = create_order(example_server, key="order-to-pay")
    body = {"order": order_id, "amount": "25.00"}
    fired = [(body, f"payment-{n}") for n in range(8)]

    responses = post_all_at_once(example_server, "/api/payments/", fired)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r for r in responses if r.status_code == 201]
    assert created, statuses
    assert sum(not is_replayed(r) for r in created) == 1, statuses
    assert {r.content for r in created} == {created[0].content}
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409)
    with example_server.connect() as conn:
        payments = conn.execute(
            "SELECT id, amount::text FROM shop_payment WHERE order_id = %s", [order_id]
        ).fetchall()
    assert payments == [(created[0].json()["id"], "25.00")]


def test_a_declined_payment_is_replayed_and_a_new_key_can_still_pay(
    example_server: Server,
) -> None:
    order_id = create_order(example_server, key="order-declined")
    declined = {"order": order_id, "amount": "20000.00"}

    first = post(example_server, "/api/payments/", declined, key="card-1")
    retry = post(example_server, "/api/payments/", declined, key="card-1")

    assert_problem(first, 402)
    assert not is_replayed(first)
    assert retry.status_code == 402
    assert is_replayed(retry)
    assert retry.content == first.content
    with example_server.connect() as conn:
        count = conn.execute(
            "SELECT count(*) FROM shop_payment WHERE order_id = %s", [order_id]
        ).fetchone()
    assert count == (0,)

    paid = post(example_server, "/api/payments/", {"order": order_id, "amount": "25.00"}, "card-2")

    assert paid.status_code == 201, paid.text
    assert not is_replayed(paid)
    with example_server.connect() as conn:
        payments = conn.execute(
            "SELECT id, amount::text FROM shop_payment WHERE order_id = %s", [order_id]
        ).fetchall()
    assert payments == [(paid.json()["id"], "25.00")]
