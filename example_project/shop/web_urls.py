from django.urls import path

from .web import CheckoutView, OrderDetailView

urlpatterns = [
    path("checkout/", CheckoutView.as_view(), name="shop-checkout"),
    path("orders/<int:pk>/", OrderDetailView.as_view(), name="shop-order"),
]
