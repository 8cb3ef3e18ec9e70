"""The doors the soak drives, as a registry: how to build a request, how to find its effect in
the final database, and which answers are definite.

A door names its business rows by a *token* the request carries (an order's item, a note's
text, a payment's amount), so the checker can tell which operation a row came from. To add a
door, write a ``Door`` and append it to ``DOORS`` (or call ``register``); the workload picks
doors by their ``weight`` and the checker reads ``effects_sql``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    #: What names this request's effect in the database and in a 2xx answer.
    token: str
    content_type: str = "application/json"
    #: The business reference the request declares, as the checker groups it ("order:12").
    reference: str | None = None


@dataclass(frozen=True)
class Effect:
    """A business row as the checker sees it."""

    door: str
    id: int
    owner: int
    token: str
    reference: str | None
    created_at: float  # epoch seconds


class Context:
    """What a client knows when it builds a request: its principal and its own orders."""

    def __init__(self, user_id: int, rng: random.Random) -> None:
        self.user_id = user_id
        self.rng = rng
        #: Orders this client created and got acknowledged, not yet paid.
        self.unpaid_orders: list[int] = []


def definite(status: int, headers: dict[str, str]) -> bool:
    """An answer a careful client stops retrying on: anything but a 5xx and the in-flight 409
    (it carries Retry-After). A dropped connection is never definite."""
    if status >= 500:
        return False
    return not (status == 409 and "retry-after" in headers)


@dataclass(frozen=True)
class Door:
    name: str
    #: Builds a request from a fresh number; ``None`` when the client cannot use it right now.
    build: Callable[[Context, int], Request | None]
    #: The token a 2xx answer's body names (the checker compares it with the request's).
    answer_token: Callable[[dict[str, Any]], str]
    #: ``SELECT id, owner_id, token, reference, created_at`` of every row this door created.
    effects_sql: str
    weight: float = 1.0
    key_required: bool = True
    #: Whether the effect's ``reference`` must be unique among successes (payments: per order).
    unique_reference: bool = False
    #: Called with the 2xx answer's body, to let the client build on it (a payment on an order).
    on_success: Callable[[Context, dict[str, Any]], None] | None = None
    is_definite: Callable[[int, dict[str, str]], bool] = definite
    #: Another body for the same target (a key or a reference reused with a different
    #: request); by default simply another request.
    variant: Callable[[Context, Request, int], Request] | None = None

    def another(self, ctx: Context, request: Request, number: int) -> Request | None:
        if self.variant is not None:
            return self.variant(ctx, request, number)
        return self.build(ctx, number)


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# -- the example project's doors -------------------------------------------------------------


def _order(ctx: Context, number: int) -> Request:
    token = f"o{number}"
    body = {"item": f"soak {token}", "quantity": 1 + ctx.rng.randrange(9)}
    return Request("/api/orders/", _json(body), token)


def _remember_order(ctx: Context, body: dict[str, Any]) -> None:
    if len(ctx.unpaid_orders) < 50:
        ctx.unpaid_orders.append(int(body["id"]))


ORDERS = Door(
    name="orders",
    build=_order,
    answer_token=lambda body: str(body["item"]).removeprefix("soak "),
    effects_sql=(
        "SELECT id, owner_id, substr(item, 6), NULL, extract(epoch FROM created_at)"
        " FROM shop_order WHERE item LIKE 'soak %'"
    ),
    weight=3.0,
    on_success=_remember_order,
)

#: Amounts above the example gateway's limit (10,000) are declined with a stored 402.
DECLINED_FROM = 1_000_000_00
DECLINE_RATE = 0.03


def amount_token(amount: Any) -> str:
    return str(Decimal(str(amount)).quantize(Decimal("0.01")))


def _amount(ctx: Context, number: int) -> str:
    # A payment's amount is its token: unique per request, in cents, accepted below 10,000.
    cents = number % 999_999 + 1
    if ctx.rng.random() < DECLINE_RATE:
        cents += DECLINED_FROM
    return f"{cents // 100}.{cents % 100:02d}"


def _payment(ctx: Context, number: int) -> Request | None:
    if not ctx.unpaid_orders:
        return None
    order = ctx.unpaid_orders.pop(ctx.rng.randrange(len(ctx.unpaid_orders)))
    return payment_request(order, _amount(ctx, number))


def _same_order(ctx: Context, request: Request, number: int) -> Request:
    assert request.reference is not None
    return payment_request(int(request.reference.removeprefix("order:")), _amount(ctx, number))


def payment_request(order: int, amount: str) -> Request:
    body = _json({"order": order, "amount": amount})
    return Request("/api/payments/", body, amount_token(amount), reference=f"order:{order}")


PAYMENTS = Door(
    name="payments",
    build=_payment,
    answer_token=lambda body: amount_token(body["amount"]),
    effects_sql=(
        "SELECT id, owner_id, amount::text, 'order:' || order_id, extract(epoch FROM created_at)"
        " FROM shop_payment"
    ),
    weight=2.0,
    unique_reference=True,
    variant=_same_order,
)

NOTES = Door(
    name="notes",
    build=lambda ctx, number: Request(
        "/api/notes/", _json({"text": f"soak n{number}"}), f"n{number}"
    ),
    answer_token=lambda body: str(body["text"]).removeprefix("soak "),
    effects_sql=(
        "SELECT id, owner_id, substr(text, 6), NULL, extract(epoch FROM created_at)"
        " FROM shop_note WHERE text LIKE 'soak %'"
    ),
    weight=1.0,
    key_required=False,
)

DOORS: list[Door] = [ORDERS, PAYMENTS, NOTES]


def register(door: Door) -> None:
    """Add a door (e.g. after merging a branch that adds one to the example project)."""
    if any(existing.name == door.name for existing in DOORS):
        raise ValueError(f"door {door.name!r} is already registered")
    DOORS.append(door)


def by_name(name: str) -> Door:
    for door in DOORS:
        if door.name == name:
            return door
    raise KeyError(name)
