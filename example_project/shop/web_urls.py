from django.urls import path

from .web import CheckoutView, OrderDetailView
from .web_fetch import quick_order

urlpatterns = [
    path("checkout/", CheckoutView.as_view(), name="shop-checkout"),
    path("orders/<int:pk>/", OrderDetailView.as_view(), name="shop-order"),
    path("quick-order/", quick_order, name="shop-quick-order"),
]
