"""Routes of the shop-shaped test views (tests/testapp/views_shop.py), under /test/shop/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.testapp import views_shop

router = SimpleRouter()
for prefix, viewset in [
    ("session-basket", views_shop.SessionBasketViewSet),
    ("live-basket", views_shop.LiveBasketViewSet),
    ("read-only-basket", views_shop.ReadOnlyBasketViewSet),
    ("gateway-checkout", views_shop.GatewayCheckoutViewSet),
    ("any-success-checkout", views_shop.AnySuccessCheckoutViewSet),
]:
    router.register(prefix, viewset, basename=f"shop-{prefix}")

urlpatterns = [
    *router.urls,
    path("checkout/", views_shop.CheckoutAPIView.as_view(), name="shop-checkout"),
    path("own-post/", views_shop.OwnPostCreateView.as_view(), name="shop-own-post"),
]
