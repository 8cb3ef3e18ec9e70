"""The labels of an HTTP door's measurements: its door and its route, never the principal
(in the scope after ``|``) nor the key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.metrics.conftest import OTel, Readings, finished_spans, otel_samples, prometheus_samples

pytestmark = pytest.mark.django_db(transaction=True)


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def label_values(otel: OTel) -> set[str]:
    samples = [*prometheus_samples(), *otel_samples(otel)]
    found = {
        value for name, labels, _ in samples if "idempotency" in name for value in labels.values()
    }
    for span in finished_spans(otel):
        found.update(str(value) for value in (span.attributes or {}).values())
    return found


def test_a_plain_django_view_is_labelled_by_its_route(
    readings: Readings, otel: OTel, user: Any
) -> None:
    client = logged_in(user)
    for _ in range(2):
        body = json.dumps({"label": "a"})
        client.post(
            "/test/doors/plain/",
            body,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="secret-key-1",
        )

    labels = {"door": "django", "scope": "plain"}
    assert readings.prometheus("django_idempotency_outcomes_total", outcome="stored", **labels) == 1
    assert (
        readings.prometheus("django_idempotency_outcomes_total", outcome="replayed", **labels) == 1
    )
    values = label_values(otel)
    assert "plain" in values
    assert not [value for value in values if "secret-key-1" in value or f"user:{user.pk}" in value]


@pytest.mark.drf
def test_a_drf_view_is_labelled_drf(readings: Readings, otel: OTel, user: Any) -> None:
    client = client_for(user)
    client.post("/test/probe/", {"label": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="secret-key-2")

    assert (
        readings.otel(
            "idempotency.outcomes",
            **{
                "idempotency.outcome": "stored",
                "idempotency.door": "drf",
                "idempotency.scope": "probe-list",
            },
        )
        == 1
    )
    values = label_values(otel)
    assert not [value for value in values if "secret-key-2" in value or f"user:{user.pk}" in value]


@pytest.mark.drf
def test_a_ninja_route_with_an_id_in_its_path_is_one_label(
    readings: Readings, otel: OTel, user: Any
) -> None:
    from tests.factories import TokenFactory

    client = Client(HTTP_AUTHORIZATION=f"Bearer {TokenFactory(user=user).key}")
    for order in ("7", "8", "9"):
        response = client.post(
            f"/test/doors/ninja/orders/{order}/pay/",
            "{}",
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=order,
        )
        assert response.status_code == 201

    scopes = {
        labels["scope"]
        for name, labels, _ in prometheus_samples()
        if name == "django_idempotency_outcomes_total" and labels["door"] == "ninja"
    }
    assert len(scopes) == 1
    assert not [value for value in label_values(otel) if "7" in value or "8" in value]
