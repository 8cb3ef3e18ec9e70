"""Round trips per request, counted, so that a regression in the hot path fails CI.

Outside ``ATOMIC_REQUESTS`` on PostgreSQL, as a production deployment runs. Each list names the
statements in order; the numbers are the contract of docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = [pytest.mark.drf, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ORDER = {"item": "x", "quantity": 1}


def statements(
    api: Any, body: dict[str, Any], key: str | None, path: str = "/api/orders/"
) -> list[str]:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    with CaptureQueriesContext(connection) as captured:
        response = api.post(path, body, format="json", **headers)
    assert response.status_code < 500, response.content
    return [_kind(query["sql"]) for query in captured.captured_queries]


def _kind(sql: str) -> str:
    words = sql.split()
    if words[0] == "WITH":
        # The claim (lock_timeout + INSERT) or a lookup (UPDATE, its event INSERT folded in).
        return "CLAIM" if "ON CONFLICT DO NOTHING" in sql else "LOOKUP"
    return words[0]


def test_a_bare_create_for_reference(api: Any) -> None:
    assert statements(api, {"text": "t"}, None, path="/api/notes/") == ["SELECT", "INSERT"]


def test_a_first_request_claims_first(api: Any) -> None:
    assert statements(api, ORDER, "k") == [
        "SELECT",  # authentication (the token)
        "BEGIN",
        "CLAIM",  # its lock_timeout set and restored in the same statement
        "SAVEPOINT",  # the view's own savepoint: what it does to the transaction stays its own
        "INSERT",  # the view's own write
        "UPDATE",  # the stored response (the COMMIT releases the savepoint: no RELEASE)
        "COMMIT",
    ]


def test_every_statement_is_its_own_round_trip(api: Any) -> None:
    """psycopg 3 sends BEGIN alone and waits for it, even in pipeline mode (see
    docs/benchmarks.md), so a first request is seven round trips: five more than a bare create.
    """
    trips = round_trips(api, ORDER, "k")
    assert [trip.split()[0].strip('"') for trip in trips] == [
        "SELECT",
        "BEGIN",
        "WITH",
        "SAVEPOINT",
        "INSERT",
        "UPDATE",
        "COMMIT",
    ]


def test_a_replay_meets_the_record_with_its_claim(api: Any) -> None:
    statements(api, ORDER, "k")
    assert statements(api, ORDER, "k") == [
        "SELECT",
        "BEGIN",
        "CLAIM",  # finds the committed key and inserts nothing
        "LOOKUP",  # counts the visit, its event INSERT folded in
        "COMMIT",
    ]


def test_a_mismatch_costs_the_same_as_a_replay(api: Any) -> None:
    statements(api, ORDER, "k")
    assert statements(api, {**ORDER, "quantity": 2}, "k") == [
        "SELECT",
        "BEGIN",
        "CLAIM",
        "LOOKUP",
        "COMMIT",
    ]


def test_without_the_event_log_a_replay_costs_the_same(api: Any, settings: Any) -> None:
    settings.IDEMPOTENCY_RECORD_EVENTS = False
    statements(api, ORDER, "k")
    assert statements(api, ORDER, "k") == ["SELECT", "BEGIN", "CLAIM", "LOOKUP", "COMMIT"]


def test_a_held_reference_is_looked_up_after_the_claim(api: Any, user: Any) -> None:
    """A reference in the way: the lookup by key finds nothing, the one by reference finds it."""
    from example_project.shop.models import Order

    order = Order.objects.create(owner=user, item="x", quantity=1)
    path = "/api/payments/"
    statements(api, {"order": order.pk, "amount": "5.00"}, "k1", path=path)
    assert statements(api, {"order": order.pk, "amount": "6.00"}, "k2", path=path) == [
        "SELECT",
        "BEGIN",
        "CLAIM",
        "LOOKUP",  # by key: nothing
        "LOOKUP",  # by reference: the record holding it
        "COMMIT",
    ]


def round_trips(api: Any, body: dict[str, Any], key: str) -> list[str]:
    """What the client sent before each wait for the server, read from libpq's trace."""
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.NamedTemporaryFile("w+", suffix=".trace") as trace_file:
        descriptor = os.dup(trace_file.fileno())
        pgconn.trace(descriptor)
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            api.post("/api/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        finally:
            pgconn.untrace()
            with contextlib.suppress(OSError):
                os.close(descriptor)
        trace_file.seek(0)
        trace = trace_file.read()
    trips: list[str] = []
    sent: list[str] = []
    for line in trace.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, message = parts[0], parts[2]
        text = parts[3].strip() if len(parts) > 3 else ""
        if direction == "F" and message in ("Query", "Parse"):
            sent.append(text.strip('"') if message == "Query" else text.split('" "', 1)[-1])
        elif direction == "B" and sent:
            trips.append(" + ".join(sent))
            sent = []
    return trips
