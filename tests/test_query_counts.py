"""Round trips per request, counted, so that a regression in the hot path fails CI.

Outside ``ATOMIC_REQUESTS`` on PostgreSQL, as a production deployment runs. Each list names the
statements in order; the numbers are the contract of docs/benchmarks.md.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

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
        # The lookup (UPDATE, its event INSERT folded in) or the claim (lock_timeout + INSERT).
        return "UPDATE" if "UPDATE " in sql else "INSERT"
    return words[0]


def test_a_bare_create_for_reference(api: Any) -> None:
    assert statements(api, {"text": "t"}, None, path="/api/notes/") == ["SELECT", "INSERT"]


def test_a_first_request_costs_seven_statements_more_than_a_bare_create(api: Any) -> None:
    assert statements(api, ORDER, "k") == [
        "SELECT",  # authentication (the token)
        "UPDATE",  # replay lookup: finds nothing, writes nothing
        "BEGIN",
        "INSERT",  # the claim, its lock_timeout set and restored in the same statement
        "SAVEPOINT",  # the view's own savepoint: what it does to the transaction stays its own
        "INSERT",  # the view's own write
        "RELEASE",
        "UPDATE",  # the stored response
        "COMMIT",
    ]


def test_a_replay_is_one_statement_after_authentication_its_event_included(api: Any) -> None:
    statements(api, ORDER, "k")
    assert statements(api, ORDER, "k") == ["SELECT", "UPDATE"]


def test_a_mismatch_costs_the_same_as_a_replay(api: Any) -> None:
    statements(api, ORDER, "k")
    assert statements(api, {**ORDER, "quantity": 2}, "k") == ["SELECT", "UPDATE"]


def test_without_the_event_log_a_replay_is_still_one_statement(api: Any, settings: Any) -> None:
    settings.IDEMPOTENCY_RECORD_EVENTS = False
    statements(api, ORDER, "k")
    assert statements(api, ORDER, "k") == ["SELECT", "UPDATE"]
