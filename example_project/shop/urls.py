from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import NoteViewSet, OrderViewSet, PaymentViewSet, TransferViewSet
from .views_shipping import (
    CarrierBookingsView,
    GatewayChargesView,
    OrderShipmentsView,
)

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("payments", PaymentViewSet, basename="payment")
router.register("notes", NoteViewSet, basename="note")
router.register("transfers", TransferViewSet, basename="transfer")

urlpatterns = [
    *router.urls,
    path("orders/<int:pk>/shipments/", OrderShipmentsView.as_view(), name="order-shipments"),
    path("gateway/charges/", GatewayChargesView.as_view(), name="gateway-charges"),
    path("carrier/bookings/", CarrierBookingsView.as_view(), name="carrier-bookings"),
    path("", include("django_idempotency.urls")),
]
