"""Test-only django-ninja API: a router made idempotent as a whole, sync and async probes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import HttpError

from django_idempotency.contrib.ninja import idempotent_router
from example_project.shop.ninja_api import DrfTokenBearer
from tests.testapp.models import Execution


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

api = NinjaAPI(urls_namespace="test-ninja", auth=DrfTokenBearer())
api.add_router("/", router)
