"""Include under your API prefix: ``path("api/", include("django_idempotency.urls"))``."""

from django.urls import path

from .issued_keys_api import IssueKeyView

urlpatterns = [
    path("idempotency-keys/", IssueKeyView.as_view(), name="idempotency-keys"),
]
