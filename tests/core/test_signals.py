"""The documented signals and their arguments, as a project's metrics receiver sees them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.dispatch import Signal
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.core.operation import Operation
from django_idempotency.models import IdempotencyRecord
from django_idempotency.signals import request_conflicted, response_replayed, response_stored
from tests.conftest import client_for
from tests.core.test_events import original_and_copy_in_flight, probe
from tests.testapp.views import Gate

pytestmark = pytest.mark.drf


class Received(list[dict[str, Any]]):
    """Every call of one signal: its keyword arguments plus ``sender``."""


@pytest.fixture
def received() -> Iterator[dict[str, Received]]:
    calls = {"stored": Received(), "replayed": Received(), "conflicted": Received()}
    receivers = []
    for name, signal in (
        ("stored", response_stored),
        ("replayed", response_replayed),
        ("conflicted", request_conflicted),
    ):

        def receiver(sender: Any, signal: Signal, _name: str = name, **kwargs: Any) -> None:
            calls[_name].append(
                {"sender": sender, "in_transaction": connection.in_atomic_block, **kwargs}
            )

        signal.connect(receiver, sender=IdempotencyRecord)
        receivers.append((signal, receiver))
    yield calls
    for signal, receiver in receivers:
        signal.disconnect(receiver, sender=IdempotencyRecord)


@pytest.mark.django_db(transaction=True)
def test_stored_is_sent_once_after_commit(api: APIClient, received: dict[str, Received]) -> None:
    response = probe(api, "k1", label="a", ref="order-1")

    (call,) = received["stored"]
    record = IdempotencyRecord.objects.get()
    assert call["sender"] is IdempotencyRecord
    assert call["record_id"] == record.pk
    assert call["status"] == response.status_code == 201
    assert not call["in_transaction"], "sent before the transaction committed"
    operation = call["operation"]
    assert isinstance(operation, Operation)
    assert (operation.scope, operation.key, operation.reference) == (
        record.scope,
        "k1",
        "ref:order-1",
    )
    assert operation.fingerprint == record.fingerprint
    assert operation.database == "default"
    assert not received["replayed"]
    assert not received["conflicted"]


@pytest.mark.django_db(transaction=True)
def test_stored_is_not_sent_for_a_released_key(
    api: APIClient, received: dict[str, Received]
) -> None:
    assert probe(api, "k1", label="a", **{"raise": "validation"}).status_code == 400
    assert received["stored"] == []
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_replayed_carries_the_operation_and_the_counted_record(
    api: APIClient, received: dict[str, Received]
) -> None:
    probe(api, "k1", label="a")
    probe(api, "k1", label="a")
    probe(api, "k1", label="a")

    assert len(received["replayed"]) == 2
    last = received["replayed"][-1]
    assert last["sender"] is IdempotencyRecord
    record = last["record"]
    assert isinstance(record, IdempotencyRecord)
    assert record.pk == IdempotencyRecord.objects.get().pk
    assert record.replay_count == 2  # counted in the same statement that found it
    assert last["operation"].key == "k1"
    assert last["operation"].fingerprint == record.fingerprint
    assert received["conflicted"] == []


@pytest.mark.django_db
def test_conflicted_kinds_mismatch_and_reference(
    api: APIClient, received: dict[str, Received]
) -> None:
    probe(api, "k1", label="a", ref="order-1")
    probe(api, "k1", label="b", ref="order-1")
    probe(api, "k2", label="c", ref="order-1")

    record = IdempotencyRecord.objects.get()
    mismatch, reference = received["conflicted"]
    assert mismatch["kind"] == "mismatch"
    assert mismatch["record"].pk == record.pk
    assert mismatch["operation"].key == "k1"
    assert mismatch["operation"].fingerprint != record.fingerprint
    assert reference["kind"] == "reference"
    assert reference["record"].pk == record.pk
    assert (reference["operation"].key, reference["operation"].reference) == ("k2", "ref:order-1")
    assert all(call["sender"] is IdempotencyRecord for call in received["conflicted"])
    assert received["replayed"] == []


@pytest.mark.django_db
def test_a_metrics_receiver_counts_what_happened(api: APIClient) -> None:
    """The documented pattern: one receiver per signal feeding a counter."""
    counts: dict[str, int] = {}

    def on_replay(sender: Any, **kwargs: Any) -> None:
        counts["replayed"] = counts.get("replayed", 0) + 1

    def on_conflict(sender: Any, kind: str, **kwargs: Any) -> None:
        counts[kind] = counts.get(kind, 0) + 1

    response_replayed.connect(on_replay)
    request_conflicted.connect(on_conflict)
    try:
        probe(api, "k1", label="a")
        probe(api, "k1", label="a")
        probe(api, "k1", label="b")
    finally:
        response_replayed.disconnect(on_replay)
        request_conflicted.disconnect(on_conflict)

    assert counts == {"replayed": 1, "mismatch": 1}


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2)
def test_conflicted_in_flight_has_no_record(
    user: Any, received: dict[str, Received], gate: Gate
) -> None:
    first, copy = original_and_copy_in_flight(client_for(user), gate)

    assert (first.status_code, copy.status_code) == (201, 409)
    (call,) = received["conflicted"]
    assert (call["kind"], call["record"]) == ("in_flight", None)
    assert call["operation"].key == "slow"
    assert len(received["stored"]) == 1
