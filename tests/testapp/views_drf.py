"""Test-only views with the patterns real DRF projects use (issue 15, issue 9 item 8).

Each view reproduces one pattern found in open-source shops; ``tests/drf/test_patterns.py``
drives them.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpResponseBase
from django.utils.cache import patch_vary_headers
from rest_framework import generics, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.generics import get_object_or_404
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency.drf import (
    IdempotentAPIViewMixin,
    IdempotentCreateMixin,
    idempotent,
)

from .models import Execution


class NotAcceptable406(APIException):
    """One shop answers its validation failures with 406."""

    status_code = 406
    default_code = "duplicate"
    default_detail = "Duplicate."


class ExecutionSerializer(serializers.Serializer[Any]):
    label = serializers.CharField()
    # ``duplicate_of``: the primary key of an existing row, to provoke an IntegrityError.
    duplicate_of = serializers.IntegerField(required=False)
    # ``guarded``: the failing INSERT runs in its own atomic block, as Django recommends.
    guarded = serializers.BooleanField(required=False, default=False)

    def create(self, validated_data: dict[str, Any]) -> Execution:
        Execution.objects.create(label=f"{validated_data['label']}-before")
        pk = validated_data.get("duplicate_of")
        try:
            if validated_data["guarded"]:
                with transaction.atomic():
                    return Execution.objects.create(pk=pk, label=validated_data["label"])
            return Execution.objects.create(pk=pk, label=validated_data["label"])
        except IntegrityError:
            raise NotAcceptable406() from None

    def update(self, instance: Execution, validated_data: dict[str, Any]) -> Execution:
        instance.label = validated_data.get("label", instance.label)
        instance.save()
        return instance


class CatchesIntegrityErrorViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[Execution]
):
    """Item 1: the serializer catches its own IntegrityError and answers 406 (stored)."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    idempotency_key_required = False


class NoQuerysetViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[Execution]
):
    """Item 2: a checkout viewset whose ``get_queryset()`` returns ``None`` and has effects."""

    serializer_class = ExecutionSerializer
    get_queryset_calls = 0

    def get_queryset(self) -> Any:
        type(self).get_queryset_calls += 1
        Execution.objects.create(label="basket created by get_queryset")
        return None


class FinalizingViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[Execution]
):
    """Item 3: ``finalize_response`` swaps in live data and adds to ``Vary``."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]  # DRF then adds Vary: Accept
    idempotency_key_required = False

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and isinstance(response.data, dict):
            calls = Execution.objects.create(label="finalize_response")
            response.data = {**response.data, "live": calls.pk}  # the "live basket"
        patch_vary_headers(response, ["Cookie"])
        return response


class PaymentError(Exception):
    pass


class PaymentCreate:
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Execution.objects.create(label="charge")
        if request.data.get("decline"):
            raise PaymentError()
        return Response({"paid": True}, status=201)


class WrappedCreateViewSet(IdempotentCreateMixin, PaymentCreate, viewsets.GenericViewSet[Any]):
    """Item 4, wrong: its ``create()`` turns a PaymentError into a 402 outside the mixin's."""

    queryset = Execution.objects.all()
    idempotency_key_required = False

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().create(request, *args, **kwargs)  # type: ignore[return-value]
        except PaymentError:
            return Response({"detail": "declined"}, status=402)


class DecoratedCreateViewSet(IdempotentCreateMixin, PaymentCreate, viewsets.GenericViewSet[Any]):
    """Item 4, right: the same ``create()``, decorated, so the 402 is inside and stored."""

    queryset = Execution.objects.all()

    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().create(request, *args, **kwargs)  # type: ignore[return-value]
        except PaymentError:
            return Response({"detail": "declined"}, status=402)


class _Status406Create:
    """Item 7: a shop that answers validation failures with 406."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        label = str(request.data.get("label", ""))
        if not label:
            return Response({"label": ["required"]}, status=406)
        Execution.objects.create(label=label)
        return Response({"label": label}, status=201)


class Releasing406ViewSet(IdempotentCreateMixin, _Status406Create, viewsets.GenericViewSet[Any]):
    queryset = Execution.objects.all()
    idempotency_release_status_codes = [400, 406, 409, 422]


class Storing406ViewSet(IdempotentCreateMixin, _Status406Create, viewsets.GenericViewSet[Any]):
    queryset = Execution.objects.all()


class UnwrappedRoutesViewSet(
    IdempotentCreateMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Execution],
):
    """Issue 9 item 8: PUT, PATCH, DELETE and a custom POST action the layer does not wrap,
    and one it does (``settle``, with per-action options)."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer

    @action(methods=["post"], detail=True)
    def archive(self, request: Request, pk: str | None = None) -> Response:
        Execution.objects.create(label="archived")
        return Response({"archived": True})

    @action(methods=["post"], detail=True)
    @idempotent(scope="settle", release_status_codes=[400, 406])
    def settle(self, request: Request, pk: str | None = None) -> Response:
        Execution.objects.create(label=f"settled {pk}")
        if request.data.get("fail"):
            return Response({"detail": "not yet"}, status=406)
        return Response({"settled": pk}, status=201)


class OptedOutRoutesViewSet(UnwrappedRoutesViewSet):
    idempotency_refuse_unwrapped_keys = False


class ShadowingViewSet(IdempotentCreateMixin, viewsets.GenericViewSet[Any]):
    """Issue 9 item 8: its own ``create()`` shadows the mixin's entirely."""

    queryset = Execution.objects.all()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Execution.objects.create(label="shadow")
        return Response({"created": True}, status=201)


class PlainAPIView(IdempotentAPIViewMixin, APIView):
    """``@idempotent`` on an ``APIView`` method."""

    @idempotent(scope="plain")
    def post(self, request: Request) -> Response:
        Execution.objects.create(label=str(request.data.get("label", "")))
        return Response({"label": request.data.get("label")}, status=201)


class WithoutMixinAPIView(APIView):
    """``@idempotent`` without the mixin in the bases: a configuration error, said loudly."""

    @idempotent()
    def post(self, request: Request) -> Response:
        return Response({}, status=201)


class BrowsableViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[Execution]
):
    """Issue 9 item 5: the browsable API first, as a browser negotiates it."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    renderer_classes = [BrowsableAPIRenderer, JSONRenderer]
    idempotency_key_required = False


class GenericCreateView(IdempotentCreateMixin, generics.CreateAPIView[Execution]):
    """Issue 15 item 9: DRF's generic views work with the mixin listed first."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer


class GenericListCreateView(IdempotentCreateMixin, generics.ListCreateAPIView[Execution]):
    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer


class DecoratedUpdatesViewSet(
    IdempotentAPIViewMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Execution],
):
    """``@idempotent`` on ``update``, ``partial_update`` and ``destroy``."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer

    @idempotent()
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Execution.objects.create(label="update ran")
        return super().update(request, *args, **kwargs)

    @idempotent()
    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # DRF's partial_update calls self.update(): the inner decorated call does not claim again.
        return super().partial_update(request, *args, **kwargs)

    @idempotent(key_required=False)
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)


class HeldUpdatesViewSet(
    IdempotentAPIViewMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Execution],
):
    """One update and one delete per row (``reference_url_kwarg``): two operations on one URL
    name (``-detail``), which must not hold each other's reference."""

    queryset = Execution.objects.all()
    serializer_class = ExecutionSerializer
    idempotency_reference_url_kwarg = "pk"

    @idempotent()
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().update(request, *args, **kwargs)

    @idempotent()
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().destroy(request, *args, **kwargs)


# -- Shapes that once broke the adapter (tests/drf/test_hostile_requests.py) --------------------


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
