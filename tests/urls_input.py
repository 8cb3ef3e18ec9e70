"""Routes of the client-input test views (tests/testapp/views_input.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.testapp import views_input as views

router = SimpleRouter()
router.register("jwt-probe", views.JwtProbeViewSet, basename="jwt-probe")
router.register("stateless-jwt-probe", views.StatelessJwtProbeViewSet, basename="stateless-probe")
router.register("guest-probe", views.GuestProbeViewSet, basename="guest-probe")
router.register("gated-guest", views.GatedGuestViewSet, basename="gated-guest")
router.register("settings-principal", views.SettingsPrincipalProbeViewSet, basename="settings-p")
router.register("guest-action", views.GuestActionViewSet, basename="guest-action")
router.register("extra-406", views.Extra406ProbeViewSet, basename="extra-406")
router.register("pay-hyperlinked", views.HyperlinkedViewSet, basename="pay-hyperlinked")
router.register("pay-slug", views.SlugViewSet, basename="pay-slug")
router.register("pay-pk", views.PkViewSet, basename="pay-pk")
router.register("pay-char", views.CharViewSet, basename="pay-char")
router.register("pay-decimal", views.DecimalViewSet, basename="pay-decimal")
router.register("pay-custom", views.CustomReferenceViewSet, basename="pay-custom")
router.register("ship-by-quantity", views.ShipByQuantityViewSet, basename="ship-by-qty")
router.register("plain", views.PlainResponseViewSet, basename="plain")

urlpatterns = [
    path("start-session/", views.start_session),
    path("cycle-session/", views.cycle_session),
    path("logout/", views.log_out),
    *router.urls,
]
