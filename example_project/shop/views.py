"""The example API: idempotent order, payment and note creation."""

from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer

from django_idempotency.drf import IdempotentCreateMixin

from .gateway import charge
from .models import Note, Order, Payment, Transfer
from .serializers import NoteSerializer, OrderSerializer, PaymentSerializer, TransferSerializer


class OwnedMixin:
    """Each user sees and creates only their own rows. Listed before DRF's mixins."""

    request: Request

    def get_queryset(self) -> QuerySet:  # type: ignore[type-arg]
        return super().get_queryset().filter(owner=self.request.user)  # type: ignore[misc]

    def perform_create(self, serializer: BaseSerializer) -> None:  # type: ignore[type-arg]
        serializer.save(owner=self.request.user)


class OrderViewSet(
    IdempotentCreateMixin,
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
        charge_id = charge(serializer.validated_data["amount"])
        serializer.save(owner=self.request.user, charge_id=charge_id)


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
