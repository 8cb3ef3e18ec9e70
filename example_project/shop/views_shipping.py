"""Shipping through a Celery task sent once (the outbox), and what the fake external services
recorded."""

from __future__ import annotations

from django.db import router
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency.celery.outbox import send_on_commit
from django_idempotency.drf import idempotent

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


class ShipActionMixin:
    """``POST /api/orders/{id}/ship/`` (URL name ``order-ship``) on the order viewset."""

    @extend_schema(request=None, responses={202: TaskAcceptedSerializer})
    @action(methods=["post"], detail=True)
    @idempotent(reference_url_kwarg="pk")  # one shipping request per order, whatever the key
    def ship(self, request: Request, pk: str | None = None) -> Response:
        """202 with the task id of ``shop.ship_order``, written to the outbox in this request's
        transaction and sent when it commits: a request that rolls back sends nothing, a replay
        (which never runs this) nothing again, and a message whose send after the commit never
        happened (lost acknowledgement, killed worker, broker down) is sent by the relay."""
        order = self.get_object()  # type: ignore[attr-defined]  # another user's order: 404
        task_id = send_on_commit(ship_order.s(order.pk), using=router.db_for_write(Order))
        return Response({"task_id": task_id}, status=status.HTTP_202_ACCEPTED)


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
