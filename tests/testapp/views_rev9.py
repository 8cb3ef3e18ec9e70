"""Test-only endpoints of the adversarial review (tests/test_adversarial_drf.py)."""

from __future__ import annotations

import time
from typing import Any

from rest_framework import serializers, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.renderers import TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency.drf import IdempotentAPIViewMixin, idempotent

from .models import Execution


class EchoQueryViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """A create that acts on its query string (``?note=...``), as filters and options do."""

    queryset = Execution.objects.all()

    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        note = request.query_params.get("note", "")
        Execution.objects.create(label=f"note:{note}")
        return Response({"note": note}, status=201)


class NestedRefundViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """``POST parents/<parent_pk>/refund/`` as drf-nested-routers routes it (``[^/.]+``): the
    reference is a URL kwarg that is not the view's own lookup, so the view's model is unknown."""

    queryset = Execution.objects.all()

    @idempotent(reference_url_kwarg="parent_pk")
    def refund(self, request: Request, parent_pk: str) -> Response:
        parent = get_object_or_404(Execution, pk=parent_pk)
        Execution.objects.create(label=f"refund:{parent.pk}")
        time.sleep(float(request.query_params.get("sleep", 0)))  # widens a race's window
        return Response({"refunded": parent.pk}, status=201)


class ReadOnlyReferenceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.IntegerField(read_only=True)
    basket = serializers.IntegerField(read_only=True, default=0)


class ReadOnlyReferenceViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """The reference names a read-only serializer field; the view reads the body itself."""

    queryset = Execution.objects.all()
    serializer_class = ReadOnlyReferenceSerializer

    @idempotent(reference_field="order")
    def create(self, request: Request) -> Response:
        Execution.objects.create(label=f"order:{request.data['order']}")
        return Response({"order": request.data["order"]}, status=201)

    @idempotent(reference_field="basket")
    def basket(self, request: Request) -> Response:
        Execution.objects.create(label=f"basket:{request.data['basket']}")
        return Response({"basket": request.data["basket"]}, status=201)


class HtmlOnlyViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """DRF's "HTML & Forms" pattern: a page with a form, so with the user's CSRF token."""

    queryset = Execution.objects.all()
    renderer_classes = [TemplateHTMLRenderer]
    template_name = "registration/login.html"
    idempotency_key_required = False

    @idempotent()
    def create(self, request: Request) -> Response:
        Execution.objects.create(label="html")
        return Response({}, status=201)
