"""A simulated card gateway: slow on request, declines large amounts."""

import os
import time
import uuid
from decimal import Decimal

from rest_framework.exceptions import APIException

from .external import sleep_ms
from .ledger import record_charge

DECLINE_ABOVE = Decimal("10000")


class PaymentDeclined(APIException):
    status_code = 402
    default_code = "payment_declined"
    default_detail = "The card was declined."


def charge(
    amount: Decimal, *, order_id: int | None = None, idempotency_key: str | None = None
) -> str:
    """Charge ``amount``; return the charge id or raise ``PaymentDeclined``.

    The charge is recorded in the gateway's own ledger (``external``); a second call with the
    same ``idempotency_key`` returns the first charge, as Stripe does.
    """
    delay_ms = int(os.environ.get("EXAMPLE_GATEWAY_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    if amount > DECLINE_ABOVE:
        raise PaymentDeclined(f"Amounts over {DECLINE_ABOVE} are declined.")
    charge_id = record_charge(amount, order_id=order_id, idempotency_key=idempotency_key)
    # The crash window: the gateway has charged, our transaction has not committed yet.
    sleep_ms("EXAMPLE_GATEWAY_DELAY_AFTER_CHARGE_MS")
    return charge_id


def refund(amount: Decimal) -> str:
    """Refund ``amount`` of an earlier charge; return the refund id."""
    delay_ms = int(os.environ.get("EXAMPLE_GATEWAY_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    return f"re_{uuid.uuid4().hex[:24]}"
