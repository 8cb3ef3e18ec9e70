"""Include under your API prefix: ``path("api/", include("django_idempotency.urls"))``."""

from django.urls import path

from .drf.issued_keys import IssueKeyView

urlpatterns = [
    path("idempotency-keys/", IssueKeyView.as_view(), name="idempotency-keys"),
]
