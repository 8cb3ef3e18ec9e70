"""The variants measured: one endpoint, wrapped by nothing, by us, and by each competitor."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    slug: str
    label: str
    path: str
    idempotent: bool
    how: str

    def new_key(self) -> str:
        # Every package accepts a UUID; two of them accept nothing else.
        return str(uuid.uuid4())


BARE = Variant("bare", "bare DRF create", "/bare/orders/", False, "no idempotency")
OURS = Variant(
    "ours",
    "django-idempotency",
    "/ours/orders/",
    True,
    "`IdempotentCreateMixin` (authenticates first, keys scoped per user and endpoint)",
)
FLOOR = Variant(
    "floor",
    "authenticated no-op (floor)",
    "/floor/",
    False,
    "DRF `APIView`, token auth, returns fixed bytes: what a replay that authenticates first "
    "cannot go below",
)
COMPETITORS = (
    Variant(
        "drf-idempotency",
        "drf-idempotency (decorator)",
        "/drf-idempotency/orders/",
        True,
        "`@idempotent()` on `create` (inside the view, after authentication; `create` returns "
        "`finalize_response(...)`, which the decorator needs to render a DRF `Response`); "
        "database backend",
    ),
    Variant(
        "drf-idempotency-mw",
        "drf-idempotency (middleware)",
        "/drf-idempotency-mw/orders/",
        True,
        "`IdempotencyMiddleware` (its quick start: answers before authentication); "
        "database backend",
    ),
    Variant(
        "drf-idempotencykey",
        "drf-idempotencykey",
        "/drf-idempotencykey/orders/",
        True,
        "`DrfIdempotencyKeyMixin` (keys per user)",
    ),
    Variant(
        "rfik",
        "djangorestframework-idempotency-key",
        "/djangorestframework-idempotency-key/orders/",
        True,
        "`IdempotencyKeyMiddleware` + `@simple_idempotency_key_method` on `create`",
    ),
)
ALL = (BARE, OURS, *COMPETITORS)
VARIANTS_SHOWN = (BARE, FLOOR, OURS, *COMPETITORS)
IDEMPOTENT = tuple(variant for variant in ALL if variant.idempotent)


def order_body(label: str, pad: int = 0) -> bytes:
    """The create payload; ``pad`` bytes of padding come back in the response body."""
    return json.dumps(
        {"sku": label, "quantity": 2, "note": "benchmark order", "pad": pad},
        separators=(",", ":"),
    ).encode()
