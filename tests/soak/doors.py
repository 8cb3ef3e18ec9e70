"""The doors the soak drives, as a registry: how to build a request, how to find its effect in
the final database, and which answers are definite.

A door names its business rows by a *token* the request carries (an order's item, a note's
text, a payment's amount), so the checker can tell which operation a row came from. To add a
door, write a ``Door`` and ``register`` it; the workload picks doors by their ``weight`` and the
checker reads ``effects_sql``. A door that builds on another's rows takes one of the 2xx answer
bodies that door remembered (``remember=True``); ``REFUNDS`` below, one refund per
payment whatever the key, is an example.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django_idempotency.exceptions import IssuedKeyExpired


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
    #: What a 2xx answer names this row by when not by its id (the ship task's id).
    answer: str | None = None


class Context:
    """What a client knows when it builds a request: its principal, its RNG, and the 2xx answer
    bodies of what it created, by door, for doors that build on them (a payment on an order)."""

    KEEP = 50

    def __init__(self, user_id: int, rng: random.Random) -> None:
        self.user_id = user_id
        self.rng = rng
        self.owned: dict[str, list[dict[str, Any]]] = {}

    def remember(self, door: str, body: dict[str, Any]) -> None:
        kept = self.owned.setdefault(door, [])
        if len(kept) < self.KEEP:
            kept.append(body)

    def take(self, door: str) -> dict[str, Any] | None:
        """One of the remembered bodies, forgotten: each is built on once."""
        kept = self.owned.get(door)
        return kept.pop(self.rng.randrange(len(kept))) if kept else None


#: The refusal of an issued key too old to start an operation: nothing ran, get a new key.
EXPIRED = IssuedKeyExpired.default_code
#: What tells it on the HTML page a browser gets (the form door).
_EXPIRED_TITLE = f"<title>{html.escape(IssuedKeyExpired.title)}</title>".encode()


def problem_code(status: int, content_type: str, body: bytes) -> str:
    """The refusal's code: a problem+json ``type``'s last part, or for the HTML refusal page of
    an expired issued key, its code; ``""`` for anything else."""
    if content_type.startswith("application/problem+json"):
        try:
            kind = json.loads(body).get("type", "")
        except (ValueError, AttributeError):
            return ""
        return re.split(r"[#/]", kind)[-1] if isinstance(kind, str) else ""
    if status == 400 and content_type.startswith("text/html") and _EXPIRED_TITLE in body:
        return EXPIRED
    return ""


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
    #: The token a 2xx answer's body names (the checker compares it with the request's);
    #: ``None`` when the answer names only the row (its token is then checked in the row).
    answer_token: Callable[[dict[str, Any]], str | None]
    #: ``SELECT id, owner_id, token, reference, created_at`` of every row this door created
    #: (``created_at`` by the database's clock: the commit time of the row's ``xmin``, as the
    #: app servers' clocks are skewed)
    #: (and a sixth column, what an answer names the row by, for doors with ``answer_names``).
    effects_sql: str
    weight: float = 1.0
    key_required: bool = True
    #: Whether the effect's ``reference`` must be unique among successes (payments: per order).
    unique_reference: bool = False
    #: Whether 2xx answer bodies are remembered (``Context.take(name)``) for other doors.
    remember: bool = False
    is_definite: Callable[[int, dict[str, str]], bool] = definite
    #: Another body for the same target (a key or a reference reused with a different
    #: request); by default simply another request.
    variant: Callable[[Context, Request, int], Request] | None = None
    #: The ``Authorization`` scheme the door reads the principal's DRF token with.
    auth_scheme: str = "Token"
    #: Which app servers serve it: ``wsgi`` (gunicorn) or ``asgi`` (uvicorn, for async views).
    served_by: str = "wsgi"
    #: Where a new operation's key comes from: ``client`` (made up, sent as the header),
    #: ``issued`` (``POST /api/idempotency-keys/``, sent as the header) or ``form`` (the hidden
    #: field of the door's own rendered form, sent back in the form with its CSRF token).
    key_source: str = "client"
    #: For ``form``: the page that renders the form (its key and CSRF token).
    form_page: str = ""
    #: Whether an answer's status is a success that names the door's row.
    acknowledged: Callable[[int], bool] = lambda status: 200 <= status < 300
    #: What the history keeps of an answer (status, headers, body) as its body: the body, or
    #: a JSON document for a door that answers with a redirect.
    record: Callable[[int, dict[str, str], bytes], bytes] = lambda status, headers, body: body
    #: What in a 2xx answer's JSON names the row: its ``id`` for most doors.
    answer_names: Callable[[dict[str, Any]], Any] = lambda body: body.get("id")
    #: Whether the row is made later by a Celery task, not by the request: the run waits for
    #: the rows of acknowledged operations before it reads the database.
    deferred: bool = False
    #: Whether a request may run again once its record expired (the checker then allows a
    #: second row a TTL later); not where a held business reference forbids it for good.
    rerun_after_expiry: bool = True

    @property
    def issued(self) -> bool:
        """Whether its keys are issued by the server (the API's or a form's): they may start an
        operation only until ``IDEMPOTENCY_ISSUED_KEY_MAX_AGE``."""
        return self.key_source in ("issued", "form")

    def another(self, ctx: Context, request: Request, number: int) -> Request | None:
        if self.variant is not None:
            return self.variant(ctx, request, number)
        return self.build(ctx, number)


def committed(alias: str = "") -> str:
    """SQL for the epoch of the commit that wrote a row (the database's clock; the cluster
    tracks commit timestamps): ``alias`` is the table's alias in the query."""
    return f"extract(epoch FROM pg_xact_commit_timestamp({alias}{'.' if alias else ''}xmin))"


#: A row's creation time for the checker (``Effect.created_at``).
AT = committed()


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# -- the example project's doors -------------------------------------------------------------


def _order(ctx: Context, number: int) -> Request:
    token = f"o{number}"
    body = {"item": f"soak {token}", "quantity": 1 + ctx.rng.randrange(9)}
    return Request("/api/orders/", _json(body), token)


ORDERS = Door(
    name="orders",
    build=_order,
    answer_token=lambda body: str(body["item"]).removeprefix("soak "),
    effects_sql=(
        f"SELECT id, owner_id, substr(item, 6), NULL, {AT} FROM shop_order WHERE item LIKE 'soak %'"
    ),
    weight=3.0,
    remember=True,
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
    order = ctx.take("orders")
    return None if order is None else payment_request(int(order["id"]), _amount(ctx, number))


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
        f"SELECT id, owner_id, amount::text, 'order:' || order_id, {AT} FROM shop_payment"
    ),
    weight=2.0,
    remember=True,
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
        f"SELECT id, owner_id, substr(text, 6), NULL, {AT} FROM shop_note WHERE text LIKE 'soak %'"
    ),
    weight=1.0,
    key_required=False,
)


def _refund(ctx: Context, number: int) -> Request | None:
    payment = ctx.take("payments")
    if payment is None:
        return None
    return refund_request(int(payment["id"]), amount_token(payment["amount"]))


def _same_payment(ctx: Context, request: Request, number: int) -> Request:
    # Another amount below the payment's own (every refund request's token is distinct).
    assert request.reference is not None
    payment = request.reference.removeprefix("payment:")
    cents = int(Decimal(request.token.partition(":")[2]) * 100)
    other = 1 + number % max(cents - 1, 1)
    return refund_request(int(payment), f"{other // 100}.{other % 100:02d}")


def refund_request(payment: int, amount: str) -> Request:
    body = _json({"amount": amount})
    token = f"{payment}:{amount_token(amount)}"
    return Request(f"/api/payments/{payment}/refund/", body, token, reference=f"payment:{payment}")


#: One refund per payment, whatever the key (the payment in the URL is the reference).
REFUNDS = Door(
    name="refunds",
    build=_refund,
    answer_token=lambda body: f"{body['payment']}:{amount_token(body['amount'])}",
    effects_sql=(
        "SELECT r.id, p.owner_id, r.payment_id || ':' || r.amount::text,"
        f" 'payment:' || r.payment_id, {committed('r')}"
        " FROM shop_refund r JOIN shop_payment p ON p.id = r.payment_id"
    ),
    weight=1.0,
    unique_reference=True,
    variant=_same_payment,
)


def _ninja_door(name: str, path: str, prefix: str, served_by: str) -> Door:
    """A ninja order door: its orders' items carry their own prefix, so its rows are its own."""

    def build(ctx: Context, number: int) -> Request:
        token = f"o{number}"
        body = {"item": f"{prefix} {token}", "quantity": 1 + ctx.rng.randrange(9)}
        return Request(path, _json(body), token)

    return Door(
        name=name,
        build=build,
        answer_token=lambda body: str(body["item"]).removeprefix(f"{prefix} "),
        effects_sql=(
            f"SELECT id, owner_id, substr(item, {len(prefix) + 2}), NULL,"
            f" {AT} FROM shop_order WHERE item LIKE '{prefix} %'"
        ),
        weight=1.0,
        auth_scheme="Bearer",
        served_by=served_by,
    )


NINJA = _ninja_door("ninja", "/ninja/orders/", "soakninja", "wsgi")
NINJA_ASYNC = _ninja_door("ninja-async", "/ninja/async/orders/", "soakasync", "asgi")


def _transfer(ctx: Context, number: int) -> Request:
    cents = 1 + ctx.rng.randrange(100_000)
    body = {"amount": f"{cents // 100}.{cents % 100:02d}", "to": f"soak t{number}"}
    return Request("/api/transfers/", _json(body), f"t{number}")


#: Only server-issued keys (``POST /api/idempotency-keys/``), each for its own principal.
TRANSFERS = Door(
    name="transfers",
    build=_transfer,
    answer_token=lambda body: str(body["to"]).removeprefix("soak "),
    effects_sql=(
        f'SELECT id, owner_id, substr("to", 6), NULL, {AT}'
        " FROM shop_transfer WHERE \"to\" LIKE 'soak %'"
    ),
    weight=1.0,
    key_source="issued",
)

CHECKOUT_PREFIX = "soakform"


def _checkout(ctx: Context, number: int) -> Request:
    token = f"o{number}"
    body = urlencode({"item": f"{CHECKOUT_PREFIX} {token}", "quantity": 1 + ctx.rng.randrange(9)})
    return Request("/shop/checkout/", body.encode(), token, "application/x-www-form-urlencoded")


def _redirect(status: int, headers: dict[str, str], body: bytes) -> bytes:
    """A 303's status and Location are its answer (a replay must repeat both); the order's id
    is the Location's last part."""
    location = headers.get("location", "")
    if status != 303:
        return body
    order = location.rstrip("/").rpartition("/")[2]
    return _json({"id": int(order) if order.isdigit() else None, "location": location})


#: The HTML form: a session login, a hidden server-issued key, a 303 to the new order's page.
CHECKOUT = Door(
    name="checkout",
    build=_checkout,
    answer_token=lambda body: None,
    effects_sql=(
        f"SELECT id, owner_id, substr(item, {len(CHECKOUT_PREFIX) + 2}), NULL,"
        f" {AT} FROM shop_order WHERE item LIKE '{CHECKOUT_PREFIX} %'"
    ),
    weight=1.0,
    key_source="form",
    form_page="/shop/checkout/",
    acknowledged=lambda status: status == 303,
    record=_redirect,
)


def ship_request(order: int, body: bytes = b"") -> Request:
    token = str(order)
    return Request(f"/api/orders/{order}/ship/", body, token, reference=f"order:{order}")


def _ship(ctx: Context, number: int) -> Request | None:
    order = ctx.take("orders")
    return None if order is None else ship_request(int(order["id"]))


def _ship_other_body(ctx: Context, request: Request, number: int) -> Request:
    # The same order with a body the view ignores but the fingerprint does not.
    assert request.reference is not None
    order = int(request.reference.removeprefix("order:"))
    return ship_request(order, _json({"note": f"n{number}"}))


_SHIP_TASKS = "django_idempotency_idempotencyrecord"

#: ``POST /api/orders/{id}/ship/``: a 202 naming the task ``shop.ship_order``, which a Celery
#: worker runs (killed and restarted by the nemesis); exactly one shipment per order, ever,
#: made by the very task the answer named.
SHIP = Door(
    name="ship",
    build=_ship,
    answer_token=lambda body: None,
    effects_sql=(
        "SELECT s.id, o.owner_id, s.order_id::text, 'order:' || s.order_id,"
        f" {committed('s')}, r.key"
        " FROM shop_shipment s JOIN shop_order o ON o.id = s.order_id"
        f" LEFT JOIN {_SHIP_TASKS} r ON r.scope = 'celery:shop.ship_order'"
        " AND r.reference = 'order:' || s.order_id"
    ),
    weight=1.0,
    unique_reference=True,
    variant=_ship_other_body,
    acknowledged=lambda status: status == 202,
    answer_names=lambda body: body.get("task_id"),
    deferred=True,
    rerun_after_expiry=False,
)

#: Not a door: the carrier's bookings, made by the ship task through a key derived from its
#: own (``derive_key("book")``), so a task that runs again books nothing more. One per order.
CARRIER = Door(
    name="carrier",
    build=lambda ctx, number: None,
    answer_token=lambda body: None,
    effects_sql=(
        'SELECT row_number() OVER (ORDER BY b.created_at), o.owner_id, b."order"::text,'
        f" 'order:' || b.\"order\", {committed('b')}"
        ' FROM shop_carrierbooking b JOIN shop_order o ON o.id = b."order"'
    ),
    weight=0.0,
    unique_reference=True,
    rerun_after_expiry=False,
)

DOORS: list[Door] = [
    ORDERS,
    PAYMENTS,
    NOTES,
    REFUNDS,
    NINJA,
    NINJA_ASYNC,
    TRANSFERS,
    CHECKOUT,
    SHIP,
    CARRIER,
]


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
