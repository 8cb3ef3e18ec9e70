"""Test-only views that require server-issued keys and replay for less than a key lives, one per
door that takes issued keys besides DRF (``views_w11``): a plain function view and ninja."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema, Status

from django_idempotency.ninja import idempotent
from django_idempotency.views import idempotent_view
from example_project.shop.ninja_api import DrfTokenBearer
from tests.testapp.models import Execution

# Shorter than any issued key's max age: the door must keep the record longer than this.
SHORT_TTL = timedelta(milliseconds=500)


@csrf_exempt
@idempotent_view(key_source="issued", ttl=SHORT_TTL)
def plain_view(request: HttpRequest) -> HttpResponse:
    execution = Execution.objects.create(label=request.POST.get("label", "plain"))
    return JsonResponse({"id": execution.pk}, status=201)


class ProbeIn(Schema):
    label: str = "ninja"


api = NinjaAPI(urls_namespace="test-issued-ninja", auth=DrfTokenBearer())


@api.post("/probe/", response={201: dict[str, Any]})
@idempotent(key_source="issued", ttl=SHORT_TTL)
def ninja_probe(request: HttpRequest, payload: ProbeIn) -> Any:
    return Status(201, {"id": Execution.objects.create(label=payload.label).pk})
