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
# The same mixin on the engine's previous hot path (benchproject/lookup_first.py), and with a
# savepoint around the view's write, each measured against the default in the same rounds.
PREVIOUS = Variant(
    "ours-previous",
    "django-idempotency, previous path",
    "/ours-previous/orders/",
    True,
    "the replay lookup before every claim (`benchproject/lookup_first.py`; the design before "
    "issue 14: a replay is one statement, a new key pays for the lookup)",
)
SAVEPOINT = Variant(
    "ours-savepoint",
    "django-idempotency + savepoint around the view",
    "/ours-savepoint/orders/",
    True,
    "the default path with the view's write inside `transaction.atomic()` (a SAVEPOINT and its "
    "RELEASE), what a savepoint around the view costs",
)
ONE_STATEMENT = Variant(
    "ours-one-statement",
    "django-idempotency, one-statement replay (not shipped)",
    "/ours-one-statement/orders/",
    True,
    "the default path with the replay's lookup folded into the claim's statement "
    "(`benchproject/one_statement.py`): measured against the default, not shipped",
)
BEFORE_24 = Variant(
    "ours-before-24",
    "django-idempotency before issue 24",
    "/ours-before-24/orders/",
    True,
    "the view in a nested `atomic()` whose savepoint a RELEASE of its own releases "
    "(`benchproject/before_issue24.py`): the hot path before this run's cut",
)
ALTERNATIVES = (BEFORE_24, ONE_STATEMENT, PREVIOUS, SAVEPOINT)
# The attribution's reference-conflict path: the same view naming the order's sku as its
# business reference (a plain field: no query resolves it).
REFERENCED = Variant(
    "ours-referenced",
    "django-idempotency, sku as the reference",
    "/ours-referenced/orders/",
    True,
    '`IdempotentCreateMixin` with `idempotency_reference_field = "sku"`',
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
VARIANTS_SHOWN = (BARE, FLOOR, OURS, *ALTERNATIVES, *COMPETITORS)
IDEMPOTENT = tuple(variant for variant in (OURS, *ALTERNATIVES, *COMPETITORS))
#: The storm: every package, and our previous path (claim first changes how copies meet).
STORMED = (*ALL, PREVIOUS)


# The other doors (issue 11), in-process only, each against its own bare variant: the same
# handler without the decorator (benchproject/doors.py).
def _door(slug: str, label: str, path: str, how: str, bare_how: str) -> tuple[Variant, Variant]:
    bare = Variant(f"{slug}-bare", f"{label}, bare", f"/doors/{path}bare/", False, bare_how)
    return bare, Variant(slug, label, f"/doors/{path}ours/", True, how)


DOORS = (
    _door(
        "door-drf-action", "DRF `@action`", "drf-action/",
        "`@action(methods=[\"post\"])` under `django_idempotency.drf.idempotent`, view with "
        "`IdempotentAPIViewMixin`",
        "the same `@action`, undecorated",
    ),
    _door(
        "door-plain", "Django function view", "plain/",
        "`django_idempotency.views.idempotent_view` (principal: the token's user)",
        "the same function view, undecorated (both resolve the DRF token to `request.user`)",
    ),
    _door(
        "door-ninja", "django-ninja operation", "ninja/sync/",
        "`django_idempotency.ninja.idempotent` on a sync operation",
        "the same ninja operation, undecorated (ninja auth on `Authorization: Token`)",
    ),
    _door(
        "door-ninja-async", "django-ninja `async def` operation", "ninja/async/",
        "`django_idempotency.ninja.idempotent` on an `async def` operation (claim, "
        "handler and store in one thread-sensitive sync block)",
        "the same `async def` operation, undecorated",
    ),
)  # fmt: skip


def order_body(label: str, pad: int = 0) -> bytes:
    """The create payload; ``pad`` bytes of padding come back in the response body."""
    return json.dumps(
        {"sku": label, "quantity": 2, "note": "benchmark order", "pad": pad},
        separators=(",", ":"),
    ).encode()
