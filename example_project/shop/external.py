"""The database connection of the fake external services (gateway, carrier).

They write through an alias of their own, so their rows commit at once, even when the request
or task that called them rolls back, as a real gateway's charge would survive our crash. On
SQLite a second connection would wait for the first one's write lock forever, so there they
share the default connection (and roll back with it: the demo's SQLite run is not the proof).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, connections, transaction

from .models import CarrierBooking, GatewayCharge

ALIAS = "external"

Row = TypeVar("Row", GatewayCharge, CarrierBooking)


def alias() -> str:
    return ALIAS if ALIAS in connections.settings else "default"


def derived_keys_enabled() -> bool:
    """``EXAMPLE_DERIVED_KEYS=0`` calls the services without a key, to show what goes wrong."""
    return os.environ.get("EXAMPLE_DERIVED_KEYS", "1") != "0"


def sleep_ms(variable: str) -> None:
    delay_ms = int(os.environ.get(variable, "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def record_once(model: type[Row], key: str | None, create: Callable[[str], Row]) -> Row:
    """Insert the service's row, or return the one an earlier call with ``key`` inserted."""
    using = alias()
    if key is not None:
        existing = model.objects.using(using).filter(idempotency_key=key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic(using=using):
            return create(using)
    except IntegrityError:
        if key is None:
            raise
        # Two calls with one key raced: the other one's row is the answer.
        return model.objects.using(using).get(idempotency_key=key)
