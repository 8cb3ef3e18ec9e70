"""The client's retry rules, answer by answer: what is retried, how long it waits, when it stops."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from django_idempotency.client import GaveUp, RetryPolicy, problem_code, retry_after
from django_idempotency.client.attempts import Attempts
from django_idempotency.exceptions import (
    IssuedKeyExpired,
    KeyMismatch,
    ReferenceConflict,
    RequestInFlight,
)

PROBLEM = {"Content-Type": "application/problem+json"}
BASE = "https://django-idempotency.readthedocs.io/en/latest/problems.html#"


def problem(code: str) -> bytes:
    return json.dumps({"type": BASE + code, "title": "t", "status": 409, "detail": "d"}).encode()


@pytest.fixture
def policy() -> RetryPolicy:
    return RetryPolicy(rng=lambda: 0.5)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 303])
def test_an_answer_below_400_is_final(policy: RetryPolicy, status: int) -> None:
    assert policy.verdict(status, {}, b"") == "done"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_server_errors_and_transient_statuses_are_retried(policy: RetryPolicy, status: int) -> None:
    assert policy.verdict(status, {}, b"") == "retry"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 422])
def test_a_4xx_about_the_request_itself_is_never_retried(policy: RetryPolicy, status: int) -> None:
    assert policy.verdict(status, PROBLEM, problem("whatever")) == "refused"


def test_a_409_in_flight_is_retried_but_a_reference_conflict_or_mismatch_is_not(
    policy: RetryPolicy,
) -> None:
    # The codes the server really sends (exceptions.py), not copies of them.
    assert policy.verdict(409, PROBLEM, problem(RequestInFlight.default_code)) == "retry"
    assert policy.verdict(409, PROBLEM, problem(ReferenceConflict.default_code)) == "refused"
    # IDEMPOTENCY_MISMATCH_STATUS = 409 makes a mismatch a 409 too: still never retried,
    # even with a Retry-After some proxy added.
    mismatch = problem(KeyMismatch.default_code)
    assert policy.verdict(409, {**PROBLEM, "Retry-After": "1"}, mismatch) == "refused"


def test_a_bare_409_is_in_flight_only_with_retry_after(policy: RetryPolicy) -> None:
    assert policy.verdict(409, {"Content-Type": "text/plain"}, b"busy") == "refused"
    assert policy.verdict(409, {"Content-Type": "text/plain", "Retry-After": "2"}, b"") == "retry"


def test_the_problem_code_is_the_last_part_of_the_type_whatever_the_base() -> None:
    for base in (BASE, "https://errors.example.com/", "urn:problem:"):
        body = json.dumps({"type": base + IssuedKeyExpired.default_code}).encode()
        assert problem_code(PROBLEM, body) == IssuedKeyExpired.default_code
    assert problem_code({"Content-Type": "text/html"}, b"<p>") is None
    assert problem_code(PROBLEM, b"not json") is None
    assert problem_code(PROBLEM, b"[1, 2]") is None


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    in_ten = format_datetime(now + timedelta(seconds=10), usegmt=True)
    past = format_datetime(now - timedelta(seconds=10), usegmt=True)

    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": " 0 "}) == 0.0
    assert retry_after({"Retry-After": in_ten}, now=now.timestamp()) == pytest.approx(10.0)
    assert retry_after({"Retry-After": past}, now=now.timestamp()) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "-1"}) is None
    assert retry_after({}) is None


def test_the_wait_is_what_retry_after_asks_else_a_jittered_exponential_backoff() -> None:
    low = RetryPolicy(base_delay=1.0, max_delay=5.0, rng=lambda: 0.0)
    high = RetryPolicy(base_delay=1.0, max_delay=5.0, rng=lambda: 1.0)

    assert [low.delay(n, {}) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [high.delay(n, {}) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    # Never less than asked, at most base_delay more (so clients told "1" spread out).
    assert low.delay(1, {"Retry-After": "3"}) == 3.0
    assert high.delay(1, {"Retry-After": "3"}) == 4.0
    # Asked for longer than max_retry_after: no retry, the answer is returned.
    assert low.delay(1, {"Retry-After": "61"}) is None


def test_attempts_stop_at_max_attempts_and_at_max_elapsed() -> None:
    now = [0.0]
    policy = RetryPolicy(max_attempts=3, max_elapsed=100, base_delay=1, rng=lambda: 1.0)
    attempts = Attempts(policy, "k", clock=lambda: now[0])
    assert attempts.answered(503, {}, b"") == ("retry", 1.0)
    assert attempts.failed(ConnectionResetError("reset")) == 2.0
    assert attempts.answered(503, {}, b"") == ("retry", None)  # the third was the last
    result = attempts.result("response", "retry", {})
    assert (result.key, result.attempts, result.outcome) == ("k", 3, "gave_up")
    assert [a.status for a in result.history] == [503, None, 503]
    assert result.history[1].error == "ConnectionResetError: reset"

    # A wait that would end past max_elapsed is not started.
    timed = Attempts(RetryPolicy(max_elapsed=10, rng=lambda: 0.0), "k", clock=lambda: now[0])
    now[0] = 9.0
    assert timed.answered(409, {"Retry-After": "2"}, b"") == ("retry", None)
    error = timed.gave_up()
    assert isinstance(error, GaveUp)
    assert (error.key, error.attempts) == ("k", 1)
    assert "'k'" in str(error)


def test_the_client_imports_neither_django_nor_an_http_library_until_an_adapter_is_used() -> None:
    script = (
        "import sys, django_idempotency.client as c; "
        "c.RetryPolicy(); c.new_key(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'requests', 'httpx'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
