"""Test-only DRF views of helper w11: views that require server-issued keys."""

from datetime import timedelta

from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency.drf import idempotent

from .models import Execution
from .views import ProbeViewSet


class IssuedShortTtlProbeViewSet(ProbeViewSet):
    """Requires issued keys and replays for less than an issued key lives."""

    idempotency_key_source = "issued"
    idempotency_ttl = timedelta(milliseconds=500)

    @action(detail=False, methods=["post"])
    @idempotent(ttl=timedelta(milliseconds=500))
    def poke(self, request: Request) -> Response:
        """An action whose own ``ttl`` option is the short one."""
        execution = Execution.objects.create(label="poke")
        return Response({"id": execution.pk}, status=201)
