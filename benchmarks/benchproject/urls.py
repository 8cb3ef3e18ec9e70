"""One URL per variant; every one serves the same create endpoint on the same model."""

from __future__ import annotations

from django.urls import path

from . import views

create = {"post": "create"}

urlpatterns = [
    path("floor/", views.AuthenticatedNoopView.as_view()),
    path("bare/orders/", views.BareOrderViewSet.as_view(create)),
    path("ours/orders/", views.OursOrderViewSet.as_view(create)),
    path("ours-previous/orders/", views.PreviousOrderViewSet.as_view(create)),
    path("ours-savepoint/orders/", views.SavepointOrderViewSet.as_view(create)),
    path("drf-idempotency/orders/", views.DrfIdempotencyOrderViewSet.as_view(create)),
    # The bare view: drf-idempotency's middleware (benchproject.middleware) wraps this prefix.
    path("drf-idempotency-mw/orders/", views.BareOrderViewSet.as_view(create)),
    path("drf-idempotencykey/orders/", views.DrfIdempotencyKeyOrderViewSet.as_view(create)),
    path(
        "djangorestframework-idempotency-key/orders/",
        views.RestFrameworkIdempotencyKeyOrderViewSet.as_view(create),
    ),
]
