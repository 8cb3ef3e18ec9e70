"""After a storm of real threads on PostgreSQL, both exporters count exactly what the database
recorded: the stored records, their replay and conflict counters, the event log."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from django.db.models import Sum
from django.test import override_settings

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from tests.conftest import client_for, race
from tests.metrics.conftest import Readings

pytestmark = [pytest.mark.drf, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

LABELS = {"door": "drf", "scope": "probe-list"}


def request(index: int) -> tuple[str, dict[str, Any]]:
    """The key and body of the storm's request ``index``: five groups, one per outcome."""
    if index < 8:  # copies of one request: one stored, the rest replayed (most after a wait)
        return "a", {"label": "a", "sleep": 0.2}
    if index < 12:  # one key, four bodies: one stored, three mismatches
        return "b", {"label": f"b{index}", "sleep": 0.2}
    if index < 16:  # four keys, one reference, four bodies: one stored, three conflicts
        return f"c{index}", {"label": f"c{index}", "ref": "order-9", "sleep": 0.2}
    if index < 19:  # copies of a request longer than the lock timeout: two in flight
        return "d", {"label": "d", "sleep": 3.0}
    return f"e{index}", {"label": "e", "raise": "validation"}  # released: 400, nothing kept


def outcome(readings: Readings, name: str) -> tuple[float, float]:
    otel_labels = {f"idempotency.{key}": value for key, value in LABELS.items()}
    return (
        readings.prometheus("django_idempotency_outcomes_total", outcome=name, **LABELS),
        readings.otel("idempotency.outcomes", **{"idempotency.outcome": name, **otel_labels}),
    )


@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=2.0)
def test_the_exported_counts_are_what_the_database_recorded(readings: Readings, user: Any) -> None:
    client = client_for(user)

    def send(index: int) -> int:
        key, body = request(index)
        response = client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
        return int(response.status_code)

    statuses = Counter(race(21, send))
    for _ in range(3):  # late retries: replays that wait for nothing
        statuses[send(0)] += 1

    records = IdempotencyRecord.objects.all()
    events = Counter(IdempotencyEvent.objects.values_list("kind", flat=True))
    counters = records.aggregate(replays=Sum("replay_count"), conflicts=Sum("conflict_count"))
    stored = records.filter(state=IdempotencyRecord.State.COMPLETED).count()

    assert outcome(readings, "stored") == (stored, stored) == (4, 4)
    replays = counters["replays"]
    assert outcome(readings, "replayed") == (replays, replays)
    assert replays == events["replayed"] >= 3
    mismatches, conflicts = outcome(readings, "mismatch"), outcome(readings, "reference_conflict")
    assert mismatches == (events["mismatch"], events["mismatch"]) == (statuses[422],) * 2
    assert conflicts == (events["reference"], events["reference"])
    assert mismatches[0] + conflicts[0] == counters["conflicts"]
    in_flight = outcome(readings, "in_flight")
    assert in_flight == (events["in_flight"], events["in_flight"])
    assert in_flight[0] + conflicts[0] == statuses[409]
    # Each group's copies ended as planned, unless a slow machine made one give up waiting.
    assert mismatches[0] >= 1
    assert conflicts[0] >= 1
    assert in_flight[0] >= 2
    # Released answers leave nothing in the database: the clients' 400s are the count.
    assert outcome(readings, "released") == (statuses[400], statuses[400]) == (2, 2)

    waits = readings.prometheus("django_idempotency_waits_total", **LABELS)
    otel_labels = {f"idempotency.{key}": value for key, value in LABELS.items()}
    assert waits == readings.otel("idempotency.waits", **otel_labels)
    assert waits == readings.prometheus("django_idempotency_wait_seconds_count", **LABELS)
    assert waits == readings.otel("idempotency.wait.duration", **otel_labels)
    # Every in-flight refusal waited; the late replays did not.
    assert in_flight[0] <= waits <= replays - 3 + mismatches[0] + conflicts[0] + in_flight[0]
