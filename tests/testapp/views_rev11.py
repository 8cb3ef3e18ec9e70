"""Test-only ninja operation for the adversarial door tests: an integer business reference."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import NinjaAPI, Schema, Status

from django_idempotency.ninja import idempotent
from example_project.shop.ninja_api import DrfTokenBearer
from tests.testapp.models import Execution


class PayIn(Schema):
    order: int


api = NinjaAPI(urls_namespace="rev11-ninja", auth=DrfTokenBearer())


@api.post("/pay/", response={201: dict[str, Any]})
@idempotent(reference_field="order")
def pay(request: HttpRequest, payload: PayIn) -> Any:
    execution = Execution.objects.create(label=f"order {payload.order}")
    return Status(201, {"id": execution.pk})
