"""One URL per variant; every one serves the same create endpoint on the same model."""

from __future__ import annotations

from django.urls import path

from . import doors, views

create = {"post": "create"}

urlpatterns = [
    path("floor/", views.AuthenticatedNoopView.as_view()),
    path("bare/orders/", views.BareOrderViewSet.as_view(create)),
    path("ours/orders/", views.OursOrderViewSet.as_view(create)),
    path("ours-referenced/orders/", views.ReferencedOrderViewSet.as_view(create)),
    path("ours-one-statement/orders/", views.OneStatementOrderViewSet.as_view(create)),
    path("ours-before-24/orders/", views.BeforeIssue24OrderViewSet.as_view(create)),
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
    # The other doors, each decorated and bare (benchproject.doors).
    path("doors/drf-action/bare/", doors.BareActionViewSet.as_view({"post": "place"})),
    path("doors/drf-action/ours/", doors.IdempotentActionViewSet.as_view({"post": "place"})),
    path("doors/plain/bare/", doors.plain_bare),
    path("doors/plain/ours/", doors.plain_idempotent),
    path("doors/ninja/", doors.api.urls),
]
