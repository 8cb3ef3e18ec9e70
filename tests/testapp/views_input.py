"""Test-only views for client input: JWT users, guest sessions, serializer references."""

from __future__ import annotations

import threading
from typing import Any

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import serializers, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.authentication import (
    JWTAuthentication,
    JWTStatelessUserAuthentication,
)

from django_idempotency.drf import IdempotentAPIViewMixin, IdempotentCreateMixin, idempotent
from example_project.shop.models import Order

from .models import Execution
from .views import ProbeViewSet


class StatelessJwtProbeViewSet(ProbeViewSet):
    """simplejwt's ``TokenUser`` (no database hit, no ``_meta``) or a session user."""

    authentication_classes = [JWTStatelessUserAuthentication, SessionAuthentication]


class JwtProbeViewSet(ProbeViewSet):
    """simplejwt's usual setup: the token's user loaded from the database."""

    authentication_classes = [JWTAuthentication, SessionAuthentication]


class GuestProbeViewSet(ProbeViewSet):
    """A guest checkout: anonymous clients allowed, their keys bound to their session."""

    permission_classes = [AllowAny]
    authentication_classes = [SessionAuthentication]
    idempotency_principal = "session"


class GuestGate:
    """Holds the first run of ``GatedGuestViewSet`` inside its operation until the test opens
    the gate, so the test can act (a login) while that copy is still in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.runs = 0
        self.lock = threading.Lock()


GUEST_GATE = GuestGate()


class _GatedCreate:
    """A guest's basket line whose first run waits at ``GUEST_GATE`` (its later runs do not)."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        Execution.objects.create(label="basket line")
        with GUEST_GATE.lock:
            GUEST_GATE.runs += 1
            first = GUEST_GATE.runs == 1
        if first:
            GUEST_GATE.entered.set()
            GUEST_GATE.opened.wait(timeout=10)
        return Response({"line": "added"}, status=201)


class GatedGuestViewSet(IdempotentCreateMixin, _GatedCreate, viewsets.GenericViewSet):  # type: ignore[type-arg]
    permission_classes = [AllowAny]
    authentication_classes = [SessionAuthentication]
    queryset = Execution.objects.all()
    idempotency_principal = "session"


class SettingsPrincipalProbeViewSet(ProbeViewSet):
    """Open to guests, with no principal of its own: ``IDEMPOTENCY_PRINCIPAL`` decides."""

    permission_classes = [AllowAny]
    authentication_classes = [SessionAuthentication]


class GuestActionViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """A guest checkout as an action: the decorator's ``principal`` option."""

    permission_classes = [AllowAny]
    authentication_classes = [SessionAuthentication]
    queryset = Execution.objects.all()

    @action(methods=["post"], detail=False)
    @idempotent(principal="session")
    def checkout(self, request: Request) -> Response:
        Execution.objects.create(label="checkout")
        return Response({"ordered": Execution.objects.count()}, status=201)


class Extra406ProbeViewSet(ProbeViewSet):
    """A shop whose validation failures are 406: released besides the default list."""

    idempotency_extra_release_status_codes = {406}


def start_session(request: HttpRequest) -> JsonResponse:
    """Put something in the session (a basket), as a shop does before checkout."""
    request.session["basket"] = request.GET.get("basket", "book")
    return JsonResponse({"basket": request.session["basket"]})


def cycle_session(request: HttpRequest) -> JsonResponse:
    request.session.cycle_key()
    return JsonResponse({})


def log_out(request: HttpRequest) -> JsonResponse:
    logout(request)
    return JsonResponse({})


class PayCreate:
    """Pays ``order`` (any kind of field): one Execution per run, labelled with the order."""

    get_serializer: Any

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        value = serializer.validated_data["order"]
        label = str(getattr(value, "pk", value))
        Execution.objects.create(label=label)
        return Response({"paid": label}, status=201)


class ReferencedCreate(IdempotentCreateMixin, PayCreate, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """The mixin before the view's own ``create()``, so the mixin wraps it."""

    idempotency_reference_field = "order"


class HyperlinkedPayment(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.HyperlinkedRelatedField(
        view_name="order-detail", queryset=Order.objects.all()
    )


class SlugPayment(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.SlugRelatedField(slug_field="item", queryset=Order.objects.all())


class PkPayment(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.PrimaryKeyRelatedField(queryset=Order.objects.all())


class CharPayment(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.CharField(max_length=10)


class DecimalPayment(serializers.Serializer):  # type: ignore[type-arg]
    order = serializers.DecimalField(max_digits=10, decimal_places=2)


class ShipByQuantityViewSet(IdempotentAPIViewMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Orders looked up by a field other than the primary key (an integer here, as a public
    order number would be): ``/07/ship/`` and ``/7/ship/`` are one order to ``get_object()``."""

    queryset = Order.objects.all()
    lookup_field = "quantity"

    @action(methods=["post"], detail=True)
    @idempotent(reference_url_kwarg="quantity")
    def ship(self, request: Request, quantity: str) -> Response:
        order = self.get_object()
        Execution.objects.create(label=f"ship {order.pk}")
        return Response({"shipped": order.pk}, status=201)


class HyperlinkedViewSet(ReferencedCreate):
    serializer_class = HyperlinkedPayment
    queryset = Execution.objects.all()


class SlugViewSet(ReferencedCreate):
    serializer_class = SlugPayment
    queryset = Execution.objects.all()


class PkViewSet(ReferencedCreate):
    serializer_class = PkPayment
    queryset = Execution.objects.all()


class CharViewSet(ReferencedCreate):
    serializer_class = CharPayment
    queryset = Execution.objects.all()


class DecimalViewSet(ReferencedCreate):
    serializer_class = DecimalPayment
    queryset = Execution.objects.all()


class CustomReferenceViewSet(ReferencedCreate):
    """A view that names its reference itself: the hook wins over the field."""

    serializer_class = CharPayment
    queryset = Execution.objects.all()

    def get_idempotency_reference(self, request: Request) -> str | None:
        return f"invoice:{str(request.data.get('order', '')).strip().upper()}"


class AnonymousCharViewSet(CharViewSet):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []


class PlainCreate:
    """``create()`` answering a plain Django response: its Content-Type is the view's own."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        Execution.objects.create(label="plain")
        headers = dict(request.data.get("headers", {}))
        content_type = headers.pop("Content-Type", "text/plain; charset=iso-8859-1")
        body = str(request.data.get("text", "café")).encode("latin-1", "replace")
        return HttpResponse(body, status=201, content_type=content_type, headers=headers)


class PlainResponseViewSet(IdempotentCreateMixin, PlainCreate, viewsets.GenericViewSet):  # type: ignore[type-arg]
    queryset = Execution.objects.all()
