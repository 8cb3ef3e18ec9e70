"""Inside an idempotent operation the client sends the operation's derived key, so a rerun of
the operation (after a crash between the downstream call and our commit) repeats the call
under the same key, and a callee that deduplicates by key performs it once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from django_idempotency.client.httpx import AsyncIdempotentClient
from django_idempotency.client.keys import choose_key
from django_idempotency.client.requests import IdempotentSession
from django_idempotency.core.derived_keys import derive_key
from django_idempotency.once import run_once

from .support import Callee

pytestmark = pytest.mark.django_db(transaction=True)


class Crash(Exception):
    """Our process dies after the downstream call, before the operation commits."""


def test_a_rerun_of_the_operation_repeats_each_downstream_call_under_its_first_key(
    callee: Callee,
) -> None:
    session = IdempotentSession()
    charges, sent = f"{callee.url}/charges", []

    def checkout(crash: bool) -> list[str]:
        first = session.post(charges, json={"amount": "10.00"})
        second = session.post(charges, json={"amount": "2.50"})  # same URL: a key of its own
        booking = session.post(f"{callee.url}/bookings", json={}, label="book pickup")
        keys = [first.key, second.key, booking.key]
        sent.append(keys)
        assert keys == [
            derive_key(f"POST {charges}"),
            derive_key(f"POST {charges} #2"),
            derive_key("book pickup"),
        ]
        if crash:
            raise Crash
        return [r.response.json()["charge"] for r in (first, second, booking)]

    with pytest.raises(Crash):  # rolled back, the key released: the client will retry
        run_once(lambda: checkout(crash=True), scope="checkout", key="order-7")
    charged = run_once(lambda: checkout(crash=False), scope="checkout", key="order-7")

    assert sent[0] == sent[1]  # the rerun sent every call under the same key
    assert len(set(sent[0])) == 3
    assert charged == [1, 2, 3]  # and the callee performed each call once
    assert sorted(callee.performed.values()) == [1, 2, 3]
    # Another operation derives other keys.
    other = run_once(lambda: session.post(charges, json={}).key, scope="checkout", key="order-8")
    assert other not in sent[0]


def test_outside_an_operation_each_logical_request_gets_a_new_random_key(callee: Callee) -> None:
    first = IdempotentSession().post(f"{callee.url}/charges", json={})
    second = IdempotentSession().post(f"{callee.url}/charges", json={})
    given = IdempotentSession().post(f"{callee.url}/charges", json={}, key="mine")

    assert first.key != second.key
    assert given.key == "mine"
    assert callee.seen == [first.key, second.key, "mine"]
    assert choose_key("GET", callee.url, key=None, label=None) is None  # nothing to deduplicate


def test_the_async_client_derives_the_same_keys_inside_an_operation(callee: Callee) -> None:
    async def call() -> str | None:
        async with httpx.AsyncClient() as http:
            result = await AsyncIdempotentClient(http).post(f"{callee.url}/charges", json={})
        return result.key

    def operation() -> list[str | None]:
        # asyncio.run copies the context: the task sees the running operation.
        return [asyncio.run(call()), derive_key(f"POST {callee.url}/charges")]

    sent, derived = run_once(operation, scope="checkout", key="order-9")
    assert sent == derived
