"""The example's Celery task: ship an order exactly once, whatever the broker redelivers."""

from __future__ import annotations

from typing import Any

from django_idempotency.celery.tasks import IdempotentTask
from django_idempotency.core.derived_keys import derive_key
from example_project.celery import app

from . import carrier
from .external import derived_keys_enabled, sleep_ms
from .models import Order, Shipment


class ShipOrderTask(IdempotentTask):
    def get_idempotency_reference(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | None:
        # One shipment per order, even if two requests with different keys enqueue it.
        order_id = kwargs.get("order_id", args[0] if args else None)
        return f"order:{order_id}"


@app.task(base=ShipOrderTask, name="shop.ship_order")  # type: ignore[untyped-decorator]
def ship_order(order_id: int) -> dict[str, Any]:
    order = Order.objects.get(pk=order_id)
    key = derive_key("book") if derived_keys_enabled() else None
    booking_id = carrier.book(order.pk, idempotency_key=key)
    shipment = Shipment.objects.create(order=order, booking_id=booking_id)
    # The crash window: the carrier has booked, our transaction has not committed yet.
    sleep_ms("EXAMPLE_CARRIER_DELAY_MS")
    return {"shipment": shipment.pk, "booking": booking_id}
