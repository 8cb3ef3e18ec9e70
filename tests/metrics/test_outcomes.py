"""Every outcome the engine decides, counted by both exporters, labelled without a key or a
principal; the four spans, children of the caller's span. SQLite or PostgreSQL, one thread."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace

from django_idempotency.core import observers
from django_idempotency.exceptions import KeyMismatch, ReferenceConflict
from django_idempotency.once import perform
from tests.metrics.conftest import OTel, Readings, finished_spans

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOMES = "django_idempotency_outcomes_total"
OTEL_OUTCOMES = "idempotency.outcomes"


def charge(amount: int, key: str, *, reference: str | None = None, fail: bool = False) -> Any:
    def run() -> dict[str, int]:
        if fail:
            raise RuntimeError("the gateway is down")
        return {"amount": amount}

    return perform(
        run, scope="shop.charge", key=key, fingerprint=f"amount={amount}", reference=reference
    )


def counted(readings: Readings, outcome: str) -> tuple[float, float]:
    labels = {"door": "once", "scope": "shop.charge"}
    return (
        readings.prometheus(OUTCOMES, outcome=outcome, **labels),
        readings.otel(
            OTEL_OUTCOMES,
            **{
                "idempotency.outcome": outcome,
                **{f"idempotency.{k}": v for k, v in labels.items()},
            },
        ),
    )


def test_each_outcome_is_counted_once_by_both_exporters(readings: Readings) -> None:
    charge(10, "k1")  # stored
    charge(10, "k1")  # replayed
    charge(10, "k1")  # replayed
    with pytest.raises(KeyMismatch):
        charge(99, "k1")  # mismatch
    with pytest.raises(RuntimeError):
        charge(10, "k2", fail=True)  # released
    charge(10, "k3", reference="order:1")  # stored
    with pytest.raises(ReferenceConflict):
        charge(20, "k4", reference="order:1")  # reference conflict

    assert counted(readings, "stored") == (2, 2)
    assert counted(readings, "replayed") == (2, 2)
    assert counted(readings, "mismatch") == (1, 1)
    assert counted(readings, "released") == (1, 1)
    assert counted(readings, "reference_conflict") == (1, 1)
    assert counted(readings, "in_flight") == (0, 0)


def test_nothing_is_counted_when_the_setting_is_off(otel: OTel) -> None:
    import django_idempotency.metrics.prometheus  # noqa: F401

    readings = Readings(otel)
    charge(10, "off")
    charge(10, "off")
    assert observers.observers() == ()
    assert counted(readings, "stored") == (0, 0)
    assert counted(readings, "replayed") == (0, 0)
    assert finished_spans(otel) == []


def test_phases_are_spans_under_the_callers_span(readings: Readings, otel: OTel) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("POST /charge") as request:
        charge(10, "span")
        charge(10, "span")
    spans = {span.name: span for span in finished_spans(otel)}
    names = [span.name for span in finished_spans(otel)]

    first = ["idempotency.claim", "idempotency.view", "idempotency.store"]
    again = ["idempotency.claim", "idempotency.replay"]
    assert sorted(names) == sorted([*first, *again, "POST /charge"])
    parent = request.get_span_context().span_id
    for name in (
        "idempotency.claim",
        "idempotency.view",
        "idempotency.store",
        "idempotency.replay",
    ):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == parent, name
        assert dict(spans[name].attributes or {}) == {
            "idempotency.door": "once",
            "idempotency.scope": "shop.charge",
        }


def test_a_failing_view_ends_its_span_with_the_error(readings: Readings, otel: OTel) -> None:
    with pytest.raises(RuntimeError):
        charge(10, "boom", fail=True)
    (view,) = [span for span in finished_spans(otel) if span.name == "idempotency.view"]
    assert not view.status.is_ok
    assert [event.name for event in view.events] == ["exception"]


def test_an_answer_that_cannot_be_stored_is_counted_released(readings: Readings) -> None:
    """Rolled back after the view, the key free again: a release, like a view that raised."""
    from django.http import StreamingHttpResponse

    from django_idempotency.core.engine import perform_once
    from django_idempotency.exceptions import ResponseNotStorable
    from django_idempotency.models import IdempotencyRecord
    from django_idempotency.once.operations import operation

    prepared = operation(scope="shop.charge", key="stream", fingerprint="f")
    with pytest.raises(ResponseNotStorable):
        perform_once(prepared, lambda: StreamingHttpResponse(iter([b"a", b"b"])))
    assert not IdempotencyRecord.objects.exists()
    assert counted(readings, "released") == (1, 1)
    assert counted(readings, "stored") == (0, 0)
