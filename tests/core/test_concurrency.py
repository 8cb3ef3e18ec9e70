"""Copies of one request racing on PostgreSQL or MariaDB with real threads and connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from tests.conftest import client_for, race
from tests.testapp.models import Execution
from tests.testapp.views import Gate

pytestmark = [
    pytest.mark.drf,
    pytest.mark.concurrent_db,
    pytest.mark.mysql_rr,
    pytest.mark.django_db(transaction=True),
]


def post_probe(
    client: APIClient, body: dict[str, Any], key: Callable[[int], str]
) -> Callable[[int], Any]:
    def send(index: int) -> Any:
        return client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY=key(index))

    return send


def test_copies_of_one_request_run_once_and_get_identical_answers(user: Any) -> None:
    client = client_for(user)
    responses = race(12, post_probe(client, {"label": "storm", "sleep": 0.5}, lambda i: "k"))

    assert [r.status_code for r in responses] == [201] * 12
    assert len({r.content for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == 11
    assert Execution.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.replay_count == 11


def test_different_keys_for_one_reference_run_once(user: Any) -> None:
    client = client_for(user)
    body = {"label": "pay", "ref": "order-7", "sleep": 0.5}
    responses = race(8, post_probe(client, body, lambda i: f"key-{i}"))

    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.content for r in responses}) == 1
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_different_bodies_for_one_reference_conflict(user: Any) -> None:
    client = client_for(user)

    def send(index: int) -> Any:
        body = {"label": f"variant-{index}", "ref": "order-8", "sleep": 0.3}
        return client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY=f"k{index}")

    responses = race(6, send)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 5
    assert all(
        r["Content-Type"] == "application/problem+json" for r in responses if r.status_code == 409
    )
    assert Execution.objects.count() == 1


@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.3, IDEMPOTENCY_RETRY_AFTER=2)
def test_copies_of_a_long_original_get_409_with_retry_after(user: Any, gate: Gate) -> None:
    client = client_for(user)
    copies = threading.Barrier(4)

    def send(index: int) -> Any:
        if index == 0:
            return post_probe(client, {"label": "slow", "gate": "held"}, lambda i: "slow")(0)
        gate.inside()  # the original holds the key until every copy is answered
        try:
            return post_probe(client, {"label": "slow"}, lambda i: "slow")(index)
        finally:
            if copies.wait(timeout=30) == 0:
                gate.open()

    responses = race(5, send)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409]
    for refused in (r for r in responses if r.status_code == 409):
        assert refused["Retry-After"] == "2"
        assert refused.json()["type"].endswith("idempotency-request-in-flight")
    assert Execution.objects.count() == 1


def test_released_original_lets_a_waiting_copy_run(user: Any) -> None:
    """A copy that waited behind a 400 (released, rolled back) runs the view itself."""
    client = client_for(user)

    def send(index: int) -> Any:
        # The first copy fails validation; the others are the corrected request.
        body: dict[str, Any] = {"label": "fixed", "sleep": 0.3}
        if index == 0:
            body["raise"] = "validation"
        return client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY="fix")

    responses = race(4, send)

    successes = [r for r in responses if r.status_code == 201]
    assert successes, [r.status_code for r in responses]
    assert len({r.content for r in successes}) == 1
    assert Execution.objects.filter(label="fixed").count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.postgres
def test_the_view_does_not_inherit_the_claims_lock_timeout(user: Any) -> None:
    """lock_timeout bounds only the claim's wait; the view runs under the session's setting."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        (before,) = cursor.fetchone()
    client = client_for(user)
    response = client.post(
        "/test/probe/",
        {"label": "gucs", "report_lock_timeout": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="gucs",
    )
    assert response.status_code == 201
    assert response.json()["lock_timeout"] == before


@pytest.mark.mysql
@pytest.mark.parametrize("set_statement", [True, False], ids=["set-statement", "save-restore"])
def test_the_view_does_not_inherit_the_claims_lock_wait_timeout(
    user: Any, set_statement: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on MariaDB, both ways of bounding the wait: MariaDB's SET STATEMENT and MySQL's
    save and restore (chosen by the server; here forced, against the same server)."""
    from django.db import connection

    from django_idempotency.core.store import mysql

    monkeypatch.setattr(mysql, "uses_set_statement", lambda connection: set_statement)
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
        (before,) = cursor.fetchone()
    client = client_for(user)
    response = client.post(
        "/test/probe/",
        {"label": "gucs", "report_lock_timeout": True},
        format="json",
        HTTP_IDEMPOTENCY_KEY="gucs",
    )
    assert response.status_code == 201
    assert response.json()["lock_timeout"] == before
    assert before != 5  # IDEMPOTENCY_LOCK_TIMEOUT's default: the check above could fail


@pytest.mark.postgres
def test_relaxed_bookkeeping_commits_do_not_leak_into_the_session(user: Any) -> None:
    """The replay's counter update and event row relax only their own commit."""
    from django.db import connection

    client = client_for(user)
    for _ in range(3):
        client.post("/test/probe/", {"label": "r"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        (setting,) = cursor.fetchone()
    assert setting == "on"
    assert IdempotencyRecord.objects.get().replay_count == 2
