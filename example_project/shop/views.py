"""The example API: idempotent order, payment, refund and note creation."""

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from django_idempotency.core.derived_keys import derive_key
from django_idempotency.drf import IdempotentCreateMixin, idempotent

from .external import derived_keys_enabled
from .gateway import charge, refund
from .models import Note, Order, Payment, Transfer
from .serializers import (
    NoteSerializer,
    OrderSerializer,
    PaymentSerializer,
    RefundSerializer,
    TransferSerializer,
)
from .views_shipping import ShipActionMixin


class OwnedMixin:
    """Each user sees and creates only their own rows. Listed before DRF's mixins."""

    request: Request

    def get_queryset(self) -> QuerySet:  # type: ignore[type-arg]
        return super().get_queryset().filter(owner=self.request.user)  # type: ignore[misc]

    def perform_create(self, serializer: BaseSerializer) -> None:  # type: ignore[type-arg]
        serializer.save(owner=self.request.user)


class OrderViewSet(
    IdempotentCreateMixin,
    ShipActionMixin,  # POST /api/orders/{id}/ship/
    OwnedMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Order.objects.order_by("id")
    serializer_class = OrderSerializer

    def get_success_headers(self, data: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {"Location": f"/api/orders/{data['id']}/"}


class PaymentViewSet(
    IdempotentCreateMixin,
    OwnedMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Payment.objects.order_by("id")
    serializer_class = PaymentSerializer
    # One payment per order, whatever the key.
    idempotency_reference_field = "order"

    def get_queryset(self) -> QuerySet:  # type: ignore[type-arg]
        queryset = super().get_queryset()
        order = self.request.query_params.get("order")
        return queryset.filter(order_id=order) if order and order.isdigit() else queryset

    def perform_create(self, serializer: BaseSerializer) -> None:  # type: ignore[type-arg]
        order = serializer.validated_data["order"]
        # The same key on every retry of this payment: the gateway charges once (Stripe-style).
        key = derive_key("charge") if derived_keys_enabled() else None
        charge_id = charge(
            serializer.validated_data["amount"], order_id=order.pk, idempotency_key=key
        )
        serializer.save(owner=self.request.user, charge_id=charge_id)

    @extend_schema(responses={201: RefundSerializer})
    @action(methods=["post"], detail=True, serializer_class=RefundSerializer)
    @idempotent(reference_url_kwarg="pk")  # one refund per payment, whatever the key
    def refund(self, request: Request, pk: str | None = None) -> Response:
        payment = self.get_object()  # another user's payment: 404
        serializer = RefundSerializer(data=request.data, context={"payment": payment})
        serializer.is_valid(raise_exception=True)
        refund_id = refund(serializer.validated_data["amount"])
        serializer.save(payment=payment, refund_id=refund_id)
        return Response(serializer.data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: RefundSerializer(many=True)})
    @action(methods=["get"], detail=True, serializer_class=RefundSerializer)
    def refunds(self, request: Request, pk: str | None = None) -> Response:
        payment = self.get_object()
        return Response(RefundSerializer(payment.refunds.order_by("id"), many=True).data)


class NoteViewSet(
    IdempotentCreateMixin,
    OwnedMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Note.objects.order_by("id")
    serializer_class = NoteSerializer
    idempotency_key_required = False


class TransferViewSet(
    IdempotentCreateMixin,
    OwnedMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,  # type: ignore[type-arg]
):
    queryset = Transfer.objects.order_by("id")
    serializer_class = TransferSerializer
    # Only keys from POST /api/idempotency-keys/, issued to this user: a made-up key is a 400.
    idempotency_key_source = "issued"
