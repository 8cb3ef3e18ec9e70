"""An outcome is counted when the database keeps it: an operation inside a transaction that
rolls back (the caller's ``atomic()``, a savepoint, ``ATOMIC_REQUESTS``) counts nothing the
rollback undid, on the database alias that holds the record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from django_idempotency.exceptions import KeyMismatch
from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from django_idempotency.once import perform
from tests.conftest import client_for
from tests.metrics.conftest import Readings

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def charge(amount: int, key: str, database: str | None = None) -> Any:
    return perform(
        lambda: {"amount": amount},
        scope="shop.charge",
        key=key,
        fingerprint=f"amount={amount}",
        database=database,
    )


def counted(
    readings: Readings, outcome: str, door: str = "once", scope: str = "shop.charge"
) -> tuple[float, float]:
    return (
        readings.prometheus(
            "django_idempotency_outcomes_total", outcome=outcome, door=door, scope=scope
        ),
        readings.otel(
            "idempotency.outcomes",
            **{
                "idempotency.outcome": outcome,
                "idempotency.door": door,
                "idempotency.scope": scope,
            },
        ),
    )


def recorded(database: str = "default") -> dict[str, Any]:
    records = IdempotencyRecord.objects.using(database)
    return {
        "stored": records.count(),
        **records.aggregate(replayed=Sum("replay_count"), conflicts=Sum("conflict_count")),
        "events": IdempotencyEvent.objects.using(database).count(),
    }


def test_what_a_callers_rollback_undoes_is_not_counted(readings: Readings) -> None:
    charge(10, "k1")
    with transaction.atomic():
        charge(10, "k1")  # a replay, its counter and event rolled back below
        with pytest.raises(KeyMismatch):
            charge(99, "k1")
        charge(10, "k2")  # stored, then rolled back
        transaction.set_rollback(True)  # the caller's own failure

    assert recorded() == {"stored": 1, "replayed": 0, "conflicts": 0, "events": 0}
    assert counted(readings, "stored") == (1, 1)
    assert counted(readings, "replayed") == (0, 0)
    assert counted(readings, "mismatch") == (0, 0)


def test_a_savepoint_rolled_back_takes_its_outcome_with_it(readings: Readings) -> None:
    with transaction.atomic():
        charge(10, "kept")
        with transaction.atomic():
            charge(10, "undone")
            transaction.set_rollback(True)
        charge(10, "kept")  # replayed, and kept
    assert recorded()["stored"] == 1
    assert counted(readings, "stored") == (1, 1)
    assert counted(readings, "replayed") == (1, 1)


def test_an_outcome_is_counted_when_its_own_database_commits(readings: Readings) -> None:
    with transaction.atomic(using="default"):
        charge(10, "k", database="other")  # committed on "other" at once
        transaction.set_rollback(True, using="default")
    with transaction.atomic(using="other"):
        charge(10, "gone", database="other")
        transaction.set_rollback(True, using="other")
    assert recorded("other")["stored"] == 1
    assert counted(readings, "stored") == (1, 1)


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    previous = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = previous


@pytest.mark.drf
def test_under_atomic_requests_a_refusal_is_counted_as_the_database_keeps_it(
    readings: Readings, atomic_requests: None, user: Any
) -> None:
    client = client_for(user)

    def post(label: str) -> int:
        response = client.post(
            "/test/probe/", {"label": label}, format="json", HTTP_IDEMPOTENCY_KEY="k"
        )
        return int(response.status_code)

    assert [post("a"), post("a"), post("b")] == [201, 201, 422]
    # DRF rolls a refused request back, its counter and event with it (docs/operating.md).
    assert recorded() == {"stored": 1, "replayed": 1, "conflicts": 0, "events": 1}
    labels = {"door": "drf", "scope": "probe-list"}
    assert counted(readings, "stored", **labels) == (1, 1)
    assert counted(readings, "replayed", **labels) == (1, 1)
    assert counted(readings, "mismatch", **labels) == (0, 0)
