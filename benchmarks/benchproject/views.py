"""One create endpoint, the same model and serializer, wrapped once per idempotency package."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpResponse
from drf_idempotency import idempotent
from drf_idempotencykey.mixins import DrfIdempotencyKeyMixin
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView
from rest_framework_idempotency_key.decorators import simple_idempotency_key_method

from django_idempotency.drf import IdempotentCreateMixin

from .before_issue24 import released_savepoint
from .lookup_first import looking_up_first
from .models import Order
from .one_statement import one_statement
from .serializers import OrderSerializer


class BareOrderViewSet(mixins.CreateModelMixin, viewsets.GenericViewSet):
    """The baseline: DRF's own create, no idempotency."""

    queryset = Order.objects.all()
    serializer_class = OrderSerializer

    def perform_create(self, serializer: BaseSerializer) -> None:
        serializer.save(owner=self.request.user)

    def get_success_headers(self, data: Any) -> dict[str, str]:
        return {"Location": f"/orders/{data['id']}/"}


class OursOrderViewSet(IdempotentCreateMixin, BareOrderViewSet):
    """django-idempotency, as its README says to use it."""

    idempotency_scope = "orders"


class ReferencedOrderViewSet(OursOrderViewSet):
    """The same, one order per sku whatever the key (the reference-conflict path)."""

    idempotency_reference_field = "sku"


class PreviousOrderViewSet(OursOrderViewSet):
    """The same mixin on the engine's previous hot path (``lookup_first.py``): the key looked
    up before every claim."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with looking_up_first():
            return super().dispatch(request, *args, **kwargs)


class OneStatementOrderViewSet(OursOrderViewSet):
    """The same mixin with a replay in one statement (``one_statement.py``, not shipped)."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with one_statement():
            return super().dispatch(request, *args, **kwargs)


class BeforeIssue24OrderViewSet(OursOrderViewSet):
    """The same mixin on the hot path before issue 24: the view in a nested ``atomic()`` (its
    savepoint released by a RELEASE of its own)."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with released_savepoint():
            return super().dispatch(request, *args, **kwargs)


class SavepointOrderViewSet(OursOrderViewSet):
    """The default path with a savepoint around the view's write."""

    def perform_create(self, serializer: BaseSerializer) -> None:
        with transaction.atomic():
            super().perform_create(serializer)


class DrfIdempotencyOrderViewSet(BareOrderViewSet):
    """drf-idempotency's per-view decorator: runs inside the view, after authentication."""

    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Its decorator renders the response to store it, and a DRF Response cannot render
        # before finalize_response() gave it a renderer (AssertionError otherwise).
        response = super().create(request, *args, **kwargs)
        return self.finalize_response(request, response, *args, **kwargs)


class DrfIdempotencyKeyOrderViewSet(DrfIdempotencyKeyMixin, BareOrderViewSet):
    """drf-idempotencykey's mixin (keys scoped to the user, UUID keys only)."""

    require_idempotency_key = True


class RestFrameworkIdempotencyKeyOrderViewSet(BareOrderViewSet):
    """djangorestframework-idempotency-key: its middleware plus its method decorator."""

    @simple_idempotency_key_method
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().create(request, *args, **kwargs)


class AuthenticatedNoopView(APIView):
    """The floor of any replay that authenticates first: DRF dispatch, token lookup, fixed bytes.

    No serializer, no business write; a replay answered after authentication cannot cost less.
    """

    def post(self, request: Request) -> HttpResponse:
        return HttpResponse(b'{"replayed":true}', status=201, content_type="application/json")
