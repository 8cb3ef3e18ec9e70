"""Test-only views that require server-issued keys and replay for less than a key lives, one per
door that takes issued keys: a DRF viewset (and its action), a plain function view and ninja."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema, Status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency.drf import idempotent as drf_idempotent
from django_idempotency.ninja import idempotent
from django_idempotency.views import idempotent_view
from example_project.shop.ninja_api import DrfTokenBearer
from tests.testapp.models import Execution
from tests.testapp.views import ProbeViewSet

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


class IssuedShortTtlProbeViewSet(ProbeViewSet):
    """Requires issued keys and replays for less than an issued key lives."""

    idempotency_key_source = "issued"
    idempotency_ttl = SHORT_TTL

    @action(detail=False, methods=["post"])
    @drf_idempotent(ttl=SHORT_TTL)
    def poke(self, request: Request) -> Response:
        """An action whose own ``ttl`` option is the short one."""
        execution = Execution.objects.create(label="poke")
        return Response({"id": execution.pk}, status=201)
