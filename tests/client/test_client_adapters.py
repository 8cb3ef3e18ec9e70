"""The three adapters (requests, httpx, httpx async) against a real HTTP server on loopback
whose answers are scripted: the same key on every attempt, waits as ``Retry-After`` asks,
no retry after a refusal, and the key handed back when no answer ever came."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from django_idempotency.client import GaveUp, Result, RetryPolicy
from django_idempotency.client.httpx import AsyncIdempotentClient, IdempotentClient
from django_idempotency.client.requests import IdempotentSession
from django_idempotency.exceptions import KeyMismatch, ReferenceConflict, RequestInFlight

from .support import Callee

POLICY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
Send = Callable[..., Result[Any]]


def problem(status: int, code: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    body = {"type": f"https://example.com/problems#{code}", "title": code, "status": status}
    headers = {"Content-Type": "application/problem+json", **headers}
    return status, headers, json.dumps(body).encode()


def requests_sender(policy: RetryPolicy) -> Send:
    return IdempotentSession(policy=policy, timeout=5).post


def httpx_sender(policy: RetryPolicy) -> Send:
    return IdempotentClient(httpx.Client(), policy=policy, timeout=5).post


def async_sender(policy: RetryPolicy) -> Send:
    def send(url: str, **kwargs: Any) -> Result[Any]:
        async def run() -> Result[Any]:
            async with httpx.AsyncClient() as http:
                return await AsyncIdempotentClient(http, policy=policy, timeout=5).post(
                    url, **kwargs
                )

        return asyncio.run(run())

    return send


ADAPTERS = pytest.mark.parametrize(
    "sender", [requests_sender, httpx_sender, async_sender], ids=["requests", "httpx", "async"]
)


@ADAPTERS
def test_a_dropped_connection_and_a_5xx_are_retried_under_the_same_key(
    callee: Callee, sender: Callable[[RetryPolicy], Send]
) -> None:
    callee.script = [None, (503, {}, b"")]

    result = sender(POLICY)(f"{callee.url}/charges", json={"amount": 1})

    assert (result.outcome, result.attempts, result.response.status_code) == ("done", 3, 201)
    assert callee.seen == [result.key] * 3
    assert [a.status for a in result.history] == [None, 503, 201]
    assert callee.performed == {result.key: 1}


@ADAPTERS
def test_a_409_in_flight_and_a_429_wait_as_long_as_retry_after_asks(
    callee: Callee, sender: Callable[[RetryPolicy], Send]
) -> None:
    # An HTTP-date has whole seconds: the second one after the next.
    date = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    callee.script = [
        problem(409, RequestInFlight.default_code, **{"Retry-After": "1"}),
        (429, {"Retry-After": format_datetime(date, usegmt=True)}, b""),
    ]

    result = sender(POLICY)(f"{callee.url}/charges", json={})

    assert (result.outcome, result.attempts) == ("done", 3)
    first, second, third = callee.arrivals
    assert second - first >= 1.0  # not before the Retry-After seconds
    assert third >= date.timestamp()  # not before the Retry-After date
    assert callee.seen == [result.key] * 3


@ADAPTERS
@pytest.mark.parametrize(
    "answer",
    [
        problem(422, KeyMismatch.default_code),
        problem(409, ReferenceConflict.default_code),
        problem(409, KeyMismatch.default_code, **{"Retry-After": "1"}),  # MISMATCH_STATUS=409
        (400, {"Content-Type": "application/json"}, b'{"amount": ["Not a number."]}'),
        (404, {}, b""),
    ],
    ids=["422-mismatch", "409-reference", "409-mismatch", "400", "404"],
)
def test_a_refusal_of_the_request_itself_is_never_retried(
    callee: Callee, sender: Callable[[RetryPolicy], Send], answer: Any
) -> None:
    callee.script = [answer]

    result = sender(POLICY)(f"{callee.url}/charges", json={})

    assert (result.outcome, result.attempts) == ("refused", 1)
    assert result.response.status_code == answer[0]
    assert callee.seen == [result.key]


@ADAPTERS
def test_no_answer_within_the_attempts_raises_gave_up_with_the_key(
    callee: Callee, sender: Callable[[RetryPolicy], Send]
) -> None:
    callee.script = [None, None, None, None]

    with pytest.raises(GaveUp) as gave_up:
        sender(POLICY)(f"{callee.url}/charges", json={})

    assert gave_up.value.attempts == 4
    assert callee.seen == [gave_up.value.key] * 4
    # Resumed with that key, later: performed once.
    result = sender(POLICY)(f"{callee.url}/charges", json={}, key=gave_up.value.key)
    assert result.outcome == "done"
    assert callee.performed == {gave_up.value.key: 1}


@ADAPTERS
def test_a_5xx_until_the_attempts_run_out_is_returned_as_gave_up(
    callee: Callee, sender: Callable[[RetryPolicy], Send]
) -> None:
    callee.script = [(500, {}, b"")] * 4

    result = sender(POLICY)(f"{callee.url}/charges", json={})

    assert (result.outcome, result.attempts, result.response.status_code) == ("gave_up", 4, 500)
