"""Shipping through a Celery task enqueued once, and what the fake external services recorded."""

from __future__ import annotations

from typing import Any

from django.db import router, transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency.drf import IdempotentCreateMixin

from .models import CarrierBooking, GatewayCharge, Order, Shipment
from .tasks import ship_order


class ShipmentSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Shipment
        fields = ["id", "order", "booking_id", "created_at"]


class GatewayChargeSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = GatewayCharge
        fields = ["id", "order", "amount", "idempotency_key"]


class CarrierBookingSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = CarrierBooking
        fields = ["id", "order", "idempotency_key"]


class TaskAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    task_id = serializers.CharField(read_only=True)


ORDER_FILTER = OpenApiParameter("order", int, description="Only this order's rows.")


class ShipOrder(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Enqueues ``shop.ship_order`` for one of the user's orders when the transaction commits."""

    queryset = Order.objects.order_by("id")
    serializer_class = TaskAcceptedSerializer

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(owner=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        order = get_object_or_404(self.get_queryset(), pk=kwargs["pk"])
        signature = ship_order.s(order.pk)
        task_id = signature.freeze().id  # known before the message is sent
        transaction.on_commit(signature.apply_async, using=router.db_for_write(Order))
        return Response({"task_id": task_id}, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(create=extend_schema(request=None, responses={202: TaskAcceptedSerializer}))
class ShipOrderViewSet(IdempotentCreateMixin, ShipOrder):
    """``POST /api/orders/{id}/ship/``: 202 with the task id. Enqueued on commit, so a request
    that rolls back enqueues nothing, and a replay (which never runs ``create``) nothing again."""

    def get_idempotency_reference(self, request: Request) -> str | None:
        # One shipping request per order, whatever the key.
        return f"order:{self.kwargs['pk']}"


class OrderShipmentsView(APIView):
    """``GET /api/orders/{id}/shipments/``."""

    @extend_schema(responses=ShipmentSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        order = get_object_or_404(Order.objects.filter(owner=request.user), pk=pk)
        shipments = Shipment.objects.filter(order=order).order_by("id")
        return Response(ShipmentSerializer(shipments, many=True).data)


def _order_filter(request: Request) -> dict[str, int]:
    order = request.query_params.get("order", "")
    # ASCII digits only: "²".isdigit() is true, and int() refuses it.
    valid = order.isascii() and order.isdigit() and len(order) < 19
    return {"order": int(order)} if valid else {}


class GatewayChargesView(APIView):
    """``GET /api/gateway/charges/?order=<id>``: the gateway's ledger, not ours."""

    @extend_schema(parameters=[ORDER_FILTER], responses=GatewayChargeSerializer(many=True))
    def get(self, request: Request) -> Response:
        charges = GatewayCharge.objects.filter(**_order_filter(request)).order_by("created_at")
        return Response(GatewayChargeSerializer(charges, many=True).data)


class CarrierBookingsView(APIView):
    """``GET /api/carrier/bookings/?order=<id>``."""

    @extend_schema(parameters=[ORDER_FILTER], responses=CarrierBookingSerializer(many=True))
    def get(self, request: Request) -> Response:
        bookings = CarrierBooking.objects.filter(**_order_filter(request)).order_by("created_at")
        return Response(CarrierBookingSerializer(bookings, many=True).data)
