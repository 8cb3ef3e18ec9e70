"""The payment gateway's ledger of charges, kept on the external services' connection."""

from __future__ import annotations

from decimal import Decimal

from .external import new_id, record_once
from .models import GatewayCharge


def record_charge(amount: Decimal, *, order_id: int | None, idempotency_key: str | None) -> str:
    charge = record_once(
        GatewayCharge,
        idempotency_key,
        lambda using: GatewayCharge.objects.using(using).create(
            id=new_id("ch"), order=order_id or 0, amount=amount, idempotency_key=idempotency_key
        ),
    )
    return charge.id
