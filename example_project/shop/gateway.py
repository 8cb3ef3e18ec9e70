"""A simulated card gateway: slow on request, declines large amounts."""

import os
import time
import uuid
from decimal import Decimal

from rest_framework.exceptions import APIException

DECLINE_ABOVE = Decimal("10000")


class PaymentDeclined(APIException):
    status_code = 402
    default_code = "payment_declined"
    default_detail = "The card was declined."


def charge(amount: Decimal) -> str:
    """Charge ``amount``; return the charge id or raise ``PaymentDeclined``."""
    delay_ms = int(os.environ.get("EXAMPLE_GATEWAY_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    if amount > DECLINE_ABOVE:
        raise PaymentDeclined(f"Amounts over {DECLINE_ABOVE} are declined.")
    return f"ch_{uuid.uuid4().hex[:24]}"


def refund(amount: Decimal) -> str:
    """Refund ``amount`` of an earlier charge; return the refund id."""
    delay_ms = int(os.environ.get("EXAMPLE_GATEWAY_DELAY_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)
    return f"re_{uuid.uuid4().hex[:24]}"
