"""Test-only django-ninja API: a router made idempotent as a whole, sync and async probes, two
routers with same-named operations, an operation decorated twice, a guest operation and one
with an integer business reference."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import HttpError

from django_idempotency.ninja import idempotent, idempotent_router
from example_project.shop.ninja_api import DrfTokenBearer
from tests.testapp.models import Execution
from tests.testapp.views_doors import open_basket, report_operation


class ProbeIn(Schema):
    label: str = "ninja"
    ref: str | None = None
    status: int = 201
    sleep: float = 0


router = Router()


def _answer(execution: Execution, status: int) -> Any:
    if status != 201:
        raise HttpError(status, f"refused after execution {execution.pk}")
    return Status(201, {"id": execution.pk, "label": execution.label})


@router.post("/probe/", response={201: dict[str, Any]})
def probe(request: HttpRequest, payload: ProbeIn) -> Any:
    time.sleep(payload.sleep)
    return _answer(Execution.objects.create(label=payload.label), payload.status)


@router.post("/async-probe/", response={201: dict[str, Any]})
async def async_probe(request: HttpRequest, payload: ProbeIn) -> Any:
    await asyncio.sleep(payload.sleep)
    return _answer(await Execution.objects.acreate(label=payload.label), payload.status)


@router.get("/probe/")
def probes(request: HttpRequest) -> Any:
    return {"count": Execution.objects.count()}


idempotent_router(router, reference_field="ref")


class OrderIn(Schema):
    order: int


def _order_router(kind: str) -> Router:
    """Payments and refunds: each router's operations are ``def create`` and ``def amend``, as
    in two apps of one project (ninja names both URLs after the function)."""
    orders = Router()

    @orders.post("/", response={201: dict[str, Any]})
    def create(request: HttpRequest, payload: OrderIn) -> Any:
        execution = Execution.objects.create(label=f"{kind} {payload.order}")
        return Status(201, {"id": execution.pk, "label": execution.label})

    @orders.patch("/", response={201: dict[str, Any]})
    def amend(request: HttpRequest, payload: OrderIn) -> Any:
        execution = Execution.objects.create(label=f"{kind} amended {payload.order}")
        return Status(201, {"id": execution.pk, "label": execution.label})

    return idempotent_router(orders, reference_field="order")


#: ``@idempotent()`` on an operation of a router made idempotent as a whole: its own reference,
#: the router's TTL.
twice = Router()


@twice.post("/", response={201: dict[str, Any]})
@idempotent(reference_field="ref")
def decorated_twice(request: HttpRequest, payload: ProbeIn) -> Any:
    return _answer(Execution.objects.create(label=payload.label), payload.status)


idempotent_router(twice, ttl=60)

guests = Router(auth=None)


@guests.post("/", response={201: dict[str, Any]})
@idempotent(principal="session")
def guest_order(request: HttpRequest, payload: ProbeIn) -> Any:
    return _answer(Execution.objects.create(label=payload.label), payload.status)


#: An integer business reference: "07", 7.0 and " 7" are order 7 to the schema, and to the key.
pay = Router()


@pay.post("/", response={201: dict[str, Any]})
@idempotent(reference_field="order")
def pay_order(request: HttpRequest, payload: OrderIn) -> Any:
    return Status(201, {"id": Execution.objects.create(label=f"order {payload.order}").pk})


class BasketIn(Schema):
    product: str | None = None


@guests.post("/basket/", response={201: dict[str, Any], 406: dict[str, Any]})
@idempotent(principal="session", key_required=False, extra_release_status_codes=[406])
def guest_basket(request: HttpRequest, payload: BasketIn) -> Any:
    return open_basket(request, payload.product)


@router.post("/orders/{order}/pay/", response={201: dict[str, Any]})
@idempotent(reference_url_kwarg="order", lock_timeout=0.25)
def pay_order_of_the_url(request: HttpRequest, order: str) -> Any:
    return report_operation(f"pay {order}")


@router.post("/other-database/", response={201: dict[str, Any]})
@idempotent(database="other")
def other_database(request: HttpRequest) -> Any:
    return report_operation("elsewhere", using="other")


api = NinjaAPI(urls_namespace="test-ninja", auth=DrfTokenBearer())
api.add_router("/", router)
api.add_router("/payments/", _order_router("payment"))
api.add_router("/refunds/", _order_router("refund"))
api.add_router("/twice/", twice)
api.add_router("/guests/", guests)
api.add_router("/pay/", pay)
