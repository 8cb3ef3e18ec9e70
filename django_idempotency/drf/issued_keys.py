"""``POST /idempotency-keys/``: a DRF view that issues a signed key to the authenticated client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..core.issued_keys import issue_key
from ..core.principals import request_principal


class IssuedKeySerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = serializers.CharField(help_text="Send it back as the Idempotency-Key header.")
    expires_at = serializers.DateTimeField(
        help_text="After this moment the key can no longer start an operation; a retry of one "
        "it started still replays."
    )


def _documented(post: Callable[..., Response]) -> Callable[..., Response]:
    """No body, a 201 answer: in the OpenAPI schema when drf-spectacular is installed."""
    try:
        from drf_spectacular.utils import extend_schema
    except ImportError:  # the openapi extra is optional
        return post
    return extend_schema(request=None, responses={201: IssuedKeySerializer})(post)


class IssueKeyView(APIView):
    """``201 {"key", "expires_at"}``: a key valid on every endpoint that requires issued keys,
    for this user only. Issuing writes nothing, so the request itself needs no key."""

    permission_classes = [IsAuthenticated]
    serializer_class = IssuedKeySerializer  # documents the answer in the OpenAPI schema

    @_documented
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        issued = issue_key(request_principal(request))
        return Response(
            IssuedKeySerializer(issued).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )
