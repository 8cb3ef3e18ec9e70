"""The example's django-ninja door: ``POST /ninja/orders/`` and its ``async def`` twin, with the
body, answer and key rules of ``POST /api/orders/`` and the user's DRF token as a Bearer token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, NinjaAPI, Schema, Status
from ninja.security import HttpBearer
from pydantic import field_validator

from django_idempotency.ninja import idempotent

from .models import Order


class DrfTokenBearer(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        # Imported here: the rest of this API, and the tests of it, run without DRF installed.
        from rest_framework.authtoken.models import Token

        found = Token.objects.select_related("user").filter(key=token).first()
        return found.user if found is not None and found.user.is_active else None


class OrderIn(Schema):
    item: str = Field(min_length=1, max_length=200)
    # Bounded by the column, as in the DRF serializer.
    quantity: int = Field(ge=1, le=2_147_483_647)

    @field_validator("item")
    @classmethod
    def storable(cls, value: str) -> str:
        # As DRF's CharField: a NUL is a 422, not a PostgreSQL error (500). (pydantic itself
        # refuses lone surrogates.)
        if "\x00" in value:
            raise ValueError("Null characters are not allowed.")
        return value


class OrderOut(Schema):
    id: int
    item: str
    quantity: int
    created_at: str

    @staticmethod
    def resolve_created_at(order: Order) -> str:
        return _as_drf(order.created_at)


def _as_drf(moment: datetime) -> str:
    # DRF's DateTimeField rendering, so both doors answer the same bytes for one order.
    value = moment.isoformat()
    return value[:-6] + "Z" if value.endswith("+00:00") else value


api = NinjaAPI(
    title="django-idempotency example (ninja)", urls_namespace="ninja", auth=DrfTokenBearer()
)


@api.post("/orders/", response={201: OrderOut})
@idempotent()
def create_order(request: HttpRequest, payload: OrderIn, response: HttpResponse) -> Any:
    order = Order.objects.create(owner=request.auth, **payload.dict())  # type: ignore[attr-defined]
    response["Location"] = f"/api/orders/{order.pk}/"
    return Status(201, order)


@api.post("/async/orders/", response={201: OrderOut})
@idempotent()
async def create_order_async(request: HttpRequest, payload: OrderIn, response: HttpResponse) -> Any:
    order = await Order.objects.acreate(owner=request.auth, **payload.dict())  # type: ignore[attr-defined]
    response["Location"] = f"/api/orders/{order.pk}/"
    return Status(201, order)
