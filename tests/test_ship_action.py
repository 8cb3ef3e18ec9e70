"""``POST /api/orders/{id}/ship/`` is an ``@idempotent`` action of the order viewset: its URL,
URL name, 202 ``{"task_id"}`` answer and OpenAPI operation are those of the old route."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from django_idempotency.celery.outbox import _publish_committed
from django_idempotency.models import OutboxMessage
from tests.factories import OrderFactory

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def test_the_url_name_is_kept(user: Any) -> None:
    order = OrderFactory(owner=user)
    assert reverse("order-ship", kwargs={"pk": order.pk}) == f"/api/orders/{order.pk}/ship/"


def test_every_spelling_of_one_order_is_one_reference(
    api: APIClient, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    order = OrderFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = api.post(f"/api/orders/{order.pk}/ship/", HTTP_IDEMPOTENCY_KEY="a")
        again = api.post(f"/api/orders/0{order.pk}/ship/", HTTP_IDEMPOTENCY_KEY="b")
    assert first.status_code == 202, first.content
    assert set(first.json()) == {"task_id"}
    # The same order under another spelling and key: the reference holds (never a second task).
    assert again.status_code == 409, again.content
    assert "idempotency-reference-conflict" in again.json()["type"]
    (message,) = OutboxMessage.objects.all()
    assert (message.task_id, message.name, message.args) == (
        first.json()["task_id"],
        "shop.ship_order",
        [order.pk],
    )
    sends = [c for c in callbacks if getattr(c, "func", None) is _publish_committed]
    assert len(sends) == 1


@pytest.mark.parametrize("pk", ["abc", "99999999999999999999"])
def test_an_id_that_is_no_order_is_a_404_problem(
    api: APIClient, assert_problem: Any, pk: str
) -> None:
    assert_problem(api.post(f"/api/orders/{pk}/ship/", HTTP_IDEMPOTENCY_KEY="k"), 404)


def test_the_openapi_operation_is_kept(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/orders/{id}/ship/"]["post"]
    assert operation["operationId"] == "api_orders_ship_create"
    assert "requestBody" not in operation
    accepted = operation["responses"]["202"]["content"]["application/json"]["schema"]
    assert accepted == {"$ref": "#/components/schemas/TaskAccepted"}
    header = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header[0]["name"] == "Idempotency-Key"
    assert header[0]["required"] is True
