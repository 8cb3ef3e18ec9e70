from django.urls import include, path
from rest_framework.routers import SimpleRouter

from .views import NoteViewSet, OrderViewSet, PaymentViewSet, TransferViewSet

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("payments", PaymentViewSet, basename="payment")
router.register("notes", NoteViewSet, basename="note")
router.register("transfers", TransferViewSet, basename="transfer")

urlpatterns = [*router.urls, path("", include("django_idempotency.urls"))]
