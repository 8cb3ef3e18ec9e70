"""Test-only views in the shapes of existing DRF shops (guest baskets and checkouts).

With a key, each must behave exactly as without one, only at most once. Driven by
tests/core/test_release.py (session), core/test_replay.py (finalize_response),
drf/test_references.py (APIView reference), drf/test_patterns.py (own post(), read-only) and
core/test_reference_hold.py.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from rest_framework import generics, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency.conf import DEFAULT_RELEASE_STATUS_CODES
from django_idempotency.drf import IdempotentAPIViewMixin, IdempotentCreateMixin, idempotent
from example_project.shop.models import Order

from .models import Execution
from .views_drf import ExecutionSerializer


class _SessionBasketCreate:
    """A basket for a client without a session (Basic or token auth): the view creates the
    session to hang the basket on, then answers its validation failure with 406."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        session = request.session
        if request.query_params.get("cycle"):
            session.cycle_key()  # as login() does
        elif session.session_key is None:
            session.save()  # the basket needs the session's key now
        session["basket"] = "open"
        Execution.objects.create(label="basket line")
        product = request.data.get("product")
        if not product:
            return Response({"product": ["This shop answers 406 here."]}, status=406)
        return Response({"basket": session.session_key is not None, "product": product}, 201)


class SessionBasketViewSet(
    IdempotentCreateMixin, _SessionBasketCreate, viewsets.GenericViewSet[Any]
):
    queryset = Execution.objects.all()
    idempotency_key_required = False
    idempotency_release_status_codes = [*DEFAULT_RELEASE_STATUS_CODES, 406]


class LiveBasketViewSet(IdempotentCreateMixin, _SessionBasketCreate, viewsets.GenericViewSet[Any]):
    """``finalize_response`` swaps in the live basket (the lines counted now)."""

    queryset = Execution.objects.all()
    idempotency_key_required = False

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if request.method == "POST" and response.status_code == 201:
            lines = Execution.objects.filter(label="basket line").count()
            response = Response({"lines": lines}, status=201)
        return super().finalize_response(request, response, *args, **kwargs)


class CheckoutSerializer(serializers.Serializer[Any]):
    basket = serializers.HyperlinkedRelatedField(
        view_name="order-detail", queryset=Order.objects.all()
    )


class CheckoutAPIView(IdempotentAPIViewMixin, APIView):
    """A checkout ``APIView`` (no ``get_serializer()``): it names its serializer class and
    builds the serializer itself, as django-oscar-api's checkout does."""

    serializer_class = CheckoutSerializer
    idempotency_reference_field = "basket"

    @idempotent()
    def post(self, request: Request) -> Response:
        serializer = self.serializer_class(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        basket = serializer.validated_data["basket"]
        Execution.objects.create(label=f"checkout {basket.pk}")
        return Response({"order": basket.pk}, status=201)


class OwnPostCreateView(IdempotentCreateMixin, generics.CreateAPIView[Execution]):
    """A generic view with its own ``post()`` around DRF's (a shop's logging, a basket check)."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Execution.objects.create(label="own post")
        return super().post(request, *args, **kwargs)


class ReadOnlyBasketViewSet(IdempotentCreateMixin, viewsets.ReadOnlyModelViewSet[Execution]):
    """The mixin on every viewset of a shop, read-only ones included."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer


class _GatewayCheckout:
    """A card payment: a 3-D Secure redirect first (202, nothing paid), then 201 paid."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        basket = request.data.get("basket")
        if request.data.get("secure_code") is None:
            Execution.objects.create(label=f"redirect {basket}")
            return Response({"redirect": f"https://gateway.example/3ds/{basket}"}, status=202)
        Execution.objects.create(label=f"paid {basket}")
        return Response({"paid": basket}, status=201)


class GatewayCheckoutViewSet(IdempotentCreateMixin, _GatewayCheckout, viewsets.GenericViewSet[Any]):
    queryset = Execution.objects.all()
    idempotency_reference_field = "basket"
    idempotency_reference_status_codes = [201]


class AnySuccessCheckoutViewSet(
    IdempotentCreateMixin, _GatewayCheckout, viewsets.GenericViewSet[Any]
):
    queryset = Execution.objects.all()
    idempotency_reference_field = "basket"
