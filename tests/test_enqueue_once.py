"""Enqueue once: ``POST /api/orders/{id}/ship/`` writes its task to the outbox and sends it on
commit, and a replay never sends it again. The task runs eagerly here (in this process);
tests/test_celery_outbox.py publishes to RabbitMQ, tests/e2e/faults/test_celery_redelivery.py
runs it on real workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import task_prerun
from rest_framework.test import APIClient

from django_idempotency.core.derived_keys import hmac_key
from django_idempotency.models import IdempotencyRecord, OutboxMessage
from example_project.celery import app
from example_project.shop.models import CarrierBooking, Shipment
from tests.factories import OrderFactory

pytestmark = pytest.mark.drf


@pytest.fixture
def sent() -> Iterator[list[str]]:
    """Ids of the ``shop.ship_order`` tasks run (eagerly) while the test runs."""
    ids: list[str] = []

    def count(sender: Any = None, task_id: str = "", **kwargs: Any) -> None:
        if getattr(sender, "name", None) == "shop.ship_order":
            ids.append(task_id)

    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    task_prerun.connect(count, weak=False)
    try:
        yield ids
    finally:
        task_prerun.disconnect(count)
        app.conf.update(task_always_eager=False, task_eager_propagates=False)


def ship(client: APIClient, order: int, key: str | None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(f"/api/orders/{order}/ship/", **headers)


@pytest.mark.django_db
def test_the_task_is_sent_on_commit_and_a_replay_sends_nothing(
    api: APIClient, user: Any, sent: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    order = OrderFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = ship(api, order.pk, "ship-1")
    assert first.status_code == 202, first.content
    task_id = first.json()["task_id"]
    assert sent == []  # nothing leaves before the request's transaction commits
    assert OutboxMessage.objects.get().task_id == task_id
    for callback in callbacks:
        callback()
    assert sent == [task_id]
    assert not OutboxMessage.objects.exists()  # sent, so gone from the outbox

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = ship(api, order.pk, "ship-1")
        other_key = ship(api, order.pk, "ship-2")  # same order: the reference replays it
    assert again.status_code == other_key.status_code == 202
    assert again.content == other_key.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert callbacks == []
    assert sent == [task_id]
    assert not OutboxMessage.objects.exists()

    shipment = Shipment.objects.get()
    booking = CarrierBooking.objects.get()
    task_record = IdempotencyRecord.objects.get(request_method="TASK")
    assert shipment.order_id == order.pk
    assert shipment.booking_id == booking.id
    assert booking.idempotency_key == hmac_key(
        "celery:shop.ship_order", task_id, "book", task_record.fingerprint
    )
    assert api.get(f"/api/orders/{order.pk}/shipments/").json()[0]["booking_id"] == booking.id
    listed = api.get(f"/api/carrier/bookings/?order={order.pk}").json()
    assert listed == [
        {"id": booking.id, "order": order.pk, "idempotency_key": booking.idempotency_key}
    ]


@pytest.mark.django_db
def test_shipping_needs_a_key_and_an_order_of_ones_own(
    api: APIClient, other_user: Any, sent: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    order = OrderFactory(owner=other_user)
    with django_capture_on_commit_callbacks(execute=True):
        assert ship(api, order.pk, None).status_code == 400
        assert ship(api, order.pk, "ship-3").status_code == 404
    assert sent == []
    assert not Shipment.objects.exists()


@pytest.mark.django_db
def test_a_task_delivered_twice_ships_once(user: Any, sent: list[str]) -> None:
    from example_project.shop.tasks import ship_order

    order = OrderFactory(owner=user)
    first = ship_order.apply(args=[order.pk], task_id="t-1").get()
    again = ship_order.apply(args=[order.pk], task_id="t-1").get()

    assert first == again
    assert Shipment.objects.count() == CarrierBooking.objects.count() == 1
    assert sent == ["t-1", "t-1"]  # delivered twice, ran once
