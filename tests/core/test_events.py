"""The event log: one row per replay or refusal, one INSERT each, and a switch to turn it off."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from tests.conftest import client_for, race
from tests.testapp.views import Gate

pytestmark = pytest.mark.drf

Kind = IdempotencyEvent.Kind
EVENT_TABLE = IdempotencyEvent._meta.db_table
RECORD_TABLE = IdempotencyRecord._meta.db_table


def probe(client: APIClient, key: str, **body: Any) -> Any:
    return client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def original_and_copy_in_flight(client: APIClient, gate: Gate) -> tuple[Any, Any]:
    """The answers to a request under key "slow" and to its copy, sent while the original
    holds the key inside the view (``gate``)."""

    def send(index: int) -> Any:
        if index == 0:
            return probe(client, "slow", label="a", gate="held")
        gate.inside()  # the original holds the key until the copy is answered
        try:
            return probe(client, "slow", label="a")
        finally:
            gate.open()

    first, copy = race(2, send)
    return first, copy


@pytest.mark.django_db
def test_a_replay_is_logged_with_its_request_and_record(api: APIClient) -> None:
    assert probe(api, "k1", label="a").status_code == 201
    assert not IdempotencyEvent.objects.exists()  # the first request is the record itself

    before = timezone.now()
    assert probe(api, "k1", label="a")["Idempotent-Replayed"] == "true"

    record = IdempotencyRecord.objects.get()
    event = IdempotencyEvent.objects.get()
    assert event.kind == Kind.REPLAYED
    assert event.record_id == record.pk
    assert (event.scope, event.key, event.reference) == (record.scope, "k1", None)
    assert event.fingerprint == record.fingerprint
    assert event.expires_at == record.expires_at
    assert before <= event.at <= timezone.now()
    assert list(record.events.all()) == [event]


@pytest.mark.django_db
def test_a_mismatch_is_logged_with_the_offending_fingerprint(api: APIClient) -> None:
    probe(api, "k1", label="a")
    assert probe(api, "k1", label="b").status_code == 422

    record = IdempotencyRecord.objects.get()
    event = IdempotencyEvent.objects.get()
    assert event.kind == Kind.MISMATCH
    assert event.record_id == record.pk
    assert len(event.fingerprint) == 64
    assert event.fingerprint != record.fingerprint
    assert (record.replay_count, record.conflict_count) == (0, 1)


@pytest.mark.django_db
def test_a_reference_conflict_is_logged_against_the_holder(api: APIClient) -> None:
    assert probe(api, "first", label="pay", ref="order-1").status_code == 201
    assert probe(api, "second", label="pay again", ref="order-1").status_code == 409

    holder = IdempotencyRecord.objects.get()
    event = IdempotencyEvent.objects.get()
    assert event.kind == Kind.REFERENCE
    assert event.record_id == holder.pk
    assert (event.key, event.reference) == ("second", "ref:order-1")
    assert event.fingerprint != holder.fingerprint
    assert holder.conflict_count == 1


@pytest.mark.django_db
def test_every_visit_after_the_first_is_one_event_in_order(api: APIClient) -> None:
    probe(api, "k1", label="a")
    for body in ({"label": "a"}, {"label": "x"}, {"label": "a"}, {"label": "y"}):
        probe(api, "k1", **body)

    kinds = list(IdempotencyEvent.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == [Kind.REPLAYED, Kind.MISMATCH, Kind.REPLAYED, Kind.MISMATCH]
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (2, 2)


@pytest.mark.django_db
@override_settings(IDEMPOTENCY_MAX_EVENTS_PER_RECORD=3)
def test_a_record_logs_its_first_visits_and_only_counts_the_rest(api: APIClient) -> None:
    """A client repeating a mismatched request writes no event past the limit."""
    probe(api, "k1", label="a")
    for body in ({"label": "a"}, {"label": "x"}, {"label": "a"}, {"label": "y"}, {"label": "z"}):
        probe(api, "k1", **body)

    kinds = list(IdempotencyEvent.objects.order_by("pk").values_list("kind", flat=True))
    assert kinds == [Kind.REPLAYED, Kind.MISMATCH, Kind.REPLAYED]
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (2, 3)


@pytest.mark.django_db
@override_settings(IDEMPOTENCY_MAX_EVENTS_PER_RECORD=1)
def test_the_limit_is_per_record(api: APIClient) -> None:
    for key in ("k1", "k2"):
        probe(api, key, label=key)
        probe(api, key, label=key)
        probe(api, key, label="other")

    events = IdempotencyEvent.objects.order_by("pk").values_list("key", "kind")
    assert list(events) == [("k1", Kind.REPLAYED), ("k2", Kind.REPLAYED)]


def _idempotency_statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements that touch the app's tables, minus the claim that every request starts
    with (it inserts nothing when it meets a stored record)."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if "django_idempotency_" in q["sql"] and "ON CONFLICT DO NOTHING" not in q["sql"]
    ]


@pytest.mark.django_db
def test_logging_costs_no_extra_statement_on_postgresql_and_one_insert_elsewhere(
    api: APIClient,
) -> None:
    probe(api, "k1", label="a")

    seen = []
    for label in ("a", "b"):  # a replay, then a mismatch
        with CaptureQueriesContext(connection) as queries:
            probe(api, "k1", label=label)
        seen.append(_idempotency_statements(queries))

    for statements in seen:
        # The counting lookup and the event; nothing else touches the app's tables.
        if connection.vendor == "postgresql":
            # One statement: the lookup's UPDATE, and the INSERT fed by what it returned.
            assert len(statements) == 1, statements
            assert f'UPDATE "{RECORD_TABLE}"' in statements[0]
            assert f'INSERT INTO "{EVENT_TABLE}"' in statements[0]
        else:
            assert len(statements) == 2, statements
            assert statements[0].startswith(f'UPDATE "{RECORD_TABLE}"')
            assert statements[1].startswith(f'INSERT INTO "{EVENT_TABLE}"')
    assert sorted(IdempotencyEvent.objects.values_list("kind", flat=True)) == [
        Kind.MISMATCH,
        Kind.REPLAYED,
    ]


@pytest.mark.django_db
@override_settings(IDEMPOTENCY_RECORD_EVENTS=False)
def test_switched_off_nothing_is_written_and_the_counters_still_move(api: APIClient) -> None:
    probe(api, "k1", label="a", ref="order-1")

    with CaptureQueriesContext(connection) as replay:
        probe(api, "k1", label="a", ref="order-1")
    # Read now: the next request through the test client clears the query log.
    statements = _idempotency_statements(replay)
    probe(api, "k1", label="b", ref="order-1")
    probe(api, "k2", label="c", ref="order-1")

    # The same one statement (on PostgreSQL its event insert selects no row), writing no event.
    assert len(statements) == 1, statements
    assert f'UPDATE "{RECORD_TABLE}"' in statements[0]
    assert not IdempotencyEvent.objects.exists()
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (1, 2)


@pytest.mark.django_db
def test_events_are_written_to_the_operations_database(api: APIClient) -> None:
    from django_idempotency.core.events import record_event
    from django_idempotency.core.operation import Operation

    operation = Operation(
        database="default",
        scope="s",
        key="k",
        fingerprint="f" * 64,
        method="POST",
        path="/",
        reference="ref:1",
        ttl=timedelta(minutes=5),
        lock_timeout=1,
    )
    before = timezone.now()
    record_event(operation, Kind.IN_FLIGHT, None)

    event = IdempotencyEvent.objects.using("default").get()
    assert (event.kind, event.record_id, event.reference) == (Kind.IN_FLIGHT, None, "ref:1")
    # An in-flight refusal is kept at least as long as the record it waited for.
    assert (
        before + timedelta(minutes=5) <= event.expires_at <= timezone.now() + timedelta(minutes=5)
    )


# -- PostgreSQL: real concurrency ---------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("log_events", [True, False])
def test_counters_and_log_agree_under_concurrency(user: Any, log_events: bool) -> None:
    client = client_for(user)
    assert probe(client, "hot", label="a").status_code == 201

    with override_settings(IDEMPOTENCY_RECORD_EVENTS=log_events):
        # Even copies replay, odd ones reuse the key with another payload.
        responses = race(
            16, lambda i: probe(client, "hot", label="a" if i % 2 == 0 else f"other-{i}")
        )

    assert sorted(r.status_code for r in responses) == [201] * 8 + [422] * 8
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (8, 8)
    kinds = list(IdempotencyEvent.objects.values_list("kind", flat=True))
    if log_events:
        assert sorted(kinds) == [Kind.MISMATCH] * 8 + [Kind.REPLAYED] * 8
        assert IdempotencyEvent.objects.filter(record=record).count() == 16
    else:
        assert kinds == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_copies_log_exactly_the_limit(user: Any) -> None:
    client = client_for(user)
    assert probe(client, "hot", label="a").status_code == 201

    with override_settings(IDEMPOTENCY_MAX_EVENTS_PER_RECORD=5):
        responses = race(
            16, lambda i: probe(client, "hot", label="a" if i % 2 == 0 else f"other-{i}")
        )

    assert sorted(r.status_code for r in responses) == [201] * 8 + [422] * 8
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (8, 8)
    assert IdempotencyEvent.objects.filter(record=record).count() == 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2)
def test_an_in_flight_refusal_is_logged_and_found_from_its_record(user: Any, gate: Gate) -> None:
    first, copy = original_and_copy_in_flight(client_for(user), gate)

    assert (first.status_code, copy.status_code) == (201, 409)
    event = IdempotencyEvent.objects.get()
    assert (event.kind, event.record_id, event.key) == (Kind.IN_FLIGHT, None, "slow")
    record = IdempotencyRecord.objects.get()
    assert list(IdempotencyEvent.objects.about(record)) == [event]
    # A new record under the same key later does not inherit the old refusal.
    record.created_at = event.at + timedelta(seconds=1)
    assert not IdempotencyEvent.objects.about(record).exists()
