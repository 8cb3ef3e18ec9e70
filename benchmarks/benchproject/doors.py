"""The other doors (issue 11), each decorated and bare: a DRF ``@action``, a plain Django function
view, a django-ninja operation and an ``async def`` one. Each pair differs only by the
decorator, so each door is measured against its own bare variant.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Schema, Status
from ninja.security import APIKeyHeader
from rest_framework import viewsets
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency.drf import IdempotentAPIViewMixin
from django_idempotency.drf import idempotent as drf_idempotent
from django_idempotency.ninja import idempotent as ninja_idempotent
from django_idempotency.views import idempotent_view

from .models import Order
from .serializers import OrderSerializer

# -- DRF: a custom action ----------------------------------------------------------------------


class BareActionViewSet(viewsets.GenericViewSet):
    """``POST /doors/drf-action/bare/``: an ``@action`` that creates an order, undecorated."""

    queryset = Order.objects.all()
    serializer_class = OrderSerializer

    @action(methods=["post"], detail=False)
    def place(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save(owner=request.user)
        return Response(serializer.data, status=201)


class IdempotentActionViewSet(IdempotentAPIViewMixin, BareActionViewSet):
    """The same action under ``@idempotent`` (scope per user and endpoint)."""

    idempotency_scope = "doors-action"

    @action(methods=["post"], detail=False)
    @drf_idempotent()
    def place(self, request: Request) -> Response:
        return super().place(request)


# -- Plain Django: a function view -------------------------------------------------------------


def token_user(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The DRF token the harness sends, as ``request.user`` (the benchmark has no sessions)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        found = Token.objects.select_related("user").filter(key=key).first()
        if scheme != "Token" or found is None:
            return HttpResponse(status=401)
        request.user = found.user
        return view(request, *args, **kwargs)

    return wrapper


def _create_plain(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    order = Order.objects.create(
        owner=request.user, sku=data["sku"], quantity=data["quantity"], note=data["note"]
    )
    return JsonResponse(_answer(order), status=201)


def _answer(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "sku": order.sku,
        "quantity": order.quantity,
        "note": order.note,
        "created_at": order.created_at.isoformat(),
    }


plain_bare = token_user(_create_plain)
plain_idempotent = token_user(idempotent_view(scope="doors-plain")(_create_plain))


# -- django-ninja: sync and async operations ---------------------------------------------------


class DrfToken(APIKeyHeader):
    """``Authorization: Token <key>``, the header every variant of the benchmark receives."""

    param_name = "Authorization"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        scheme, _, token = (key or "").partition(" ")
        if scheme != "Token":
            return None
        found = Token.objects.select_related("user").filter(key=token).first()
        return found.user if found is not None and found.user.is_active else None


class OrderIn(Schema):
    sku: str
    quantity: int
    note: str = ""
    pad: int = 0


api = NinjaAPI(title="benchmark doors", urls_namespace="bench-ninja", auth=DrfToken())


def _fields(payload: OrderIn) -> dict[str, Any]:
    return {"sku": payload.sku, "quantity": payload.quantity, "note": payload.note}


@api.post("/sync/bare/", response={201: dict[str, Any]})
def ninja_bare(request: HttpRequest, payload: OrderIn) -> Any:
    return Status(201, _answer(Order.objects.create(owner=request.auth, **_fields(payload))))


@api.post("/sync/ours/", response={201: dict[str, Any]})
@ninja_idempotent(scope="doors-ninja")
def ninja_ours(request: HttpRequest, payload: OrderIn) -> Any:
    return Status(201, _answer(Order.objects.create(owner=request.auth, **_fields(payload))))


@api.post("/async/bare/", response={201: dict[str, Any]})
async def ninja_async_bare(request: HttpRequest, payload: OrderIn) -> Any:
    order = await Order.objects.acreate(owner=request.auth, **_fields(payload))
    return Status(201, _answer(order))


@api.post("/async/ours/", response={201: dict[str, Any]})
@ninja_idempotent(scope="doors-ninja-async")
async def ninja_async_ours(request: HttpRequest, payload: OrderIn) -> Any:
    order = await Order.objects.acreate(owner=request.auth, **_fields(payload))
    return Status(201, _answer(order))
