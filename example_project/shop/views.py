"""The example API: idempotent order, payment and note creation."""

from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.serializers import BaseSerializer

from django_idempotency.drf import IdempotentCreateMixin

from .gateway import charge
from .models import Note, Order, Payment
from .serializers import NoteSerializer, OrderSerializer, PaymentSerializer


class OwnedViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    def get_queryset(self) -> QuerySet:  # type: ignore[type-arg]
        return super().get_queryset().filter(owner=self.request.user)

    def perform_create(self, serializer: BaseSerializer) -> None:  # type: ignore[type-arg]
        serializer.save(owner=self.request.user)


class OrderViewSet(
    IdempotentCreateMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    OwnedViewSet,
):
    queryset = Order.objects.order_by("id")
    serializer_class = OrderSerializer

    def get_success_headers(self, data: dict) -> dict[str, str]:  # type: ignore[type-arg]
        return {"Location": f"/api/orders/{data['id']}/"}


class PaymentViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, mixins.ListModelMixin, OwnedViewSet
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
    IdempotentCreateMixin, mixins.CreateModelMixin, mixins.ListModelMixin, OwnedViewSet
):
    queryset = Note.objects.order_by("id")
    serializer_class = NoteSerializer
    idempotency_key_required = False
