from rest_framework.routers import SimpleRouter

from .views import NoteViewSet, OrderViewSet, PaymentViewSet

router = SimpleRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("payments", PaymentViewSet, basename="payment")
router.register("notes", NoteViewSet, basename="note")

urlpatterns = router.urls
