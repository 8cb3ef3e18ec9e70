"""A simulated parcel carrier: books pickups and, like the gateway, deduplicates by key."""

from __future__ import annotations

from .external import new_id, record_once
from .models import CarrierBooking


def book(order_id: int, *, idempotency_key: str | None = None) -> str:
    """Book a pickup for ``order_id``; return the booking id (the first one for a known key)."""
    booking = record_once(
        CarrierBooking,
        idempotency_key,
        lambda using: CarrierBooking.objects.using(using).create(
            id=new_id("bk"), order=order_id, idempotency_key=idempotency_key
        ),
    )
    return booking.id
