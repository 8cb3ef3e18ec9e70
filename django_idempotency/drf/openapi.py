"""The OpenAPI building blocks of the idempotency layer for drf-spectacular (optional): the
``Idempotency-Key`` header parameter and the problem document. ``drf/schema.py`` puts them on
every idempotent operation; use them directly in ``extend_schema(...)`` elsewhere.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from ..conf import app_settings
from ..core.keys import MAX_KEY_LENGTH

#: The recommended (unquoted) form: printable ASCII without a comma (a list of keys), no space
#: at either end. The quoted RFC 8941 form (``"abc"``, ``"a,b"``) is accepted too.
KEY_PATTERN = r"^[!-+\--~]([ -+\--~]*[!-+\--~])?$"


class ProblemSerializer(serializers.Serializer[Any]):
    """An RFC 9457 problem document, as every refusal of the layer is rendered."""

    type = serializers.CharField(help_text="URI naming the problem; ends with its stable code.")
    title = serializers.CharField(help_text="Short summary of the problem type.")
    status = serializers.IntegerField(help_text="The HTTP status of the answer.")
    detail = serializers.CharField(help_text="What went wrong with this request.")
    # The metaclass pops declared fields, so this does not shadow ``Serializer.errors``.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Field messages, for validation errors only."
    )

    class Meta:
        ref_name = "Problem"


def idempotency_key_parameter(*, required: bool) -> OpenApiParameter:
    """The ``Idempotency-Key`` request header, for ``extend_schema(parameters=...)``."""
    return OpenApiParameter(
        name=app_settings.HEADER,
        type={
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": KEY_PATTERN,
        },
        location=OpenApiParameter.HEADER,
        required=required,
        description=(
            f"Up to {MAX_KEY_LENGTH} printable ASCII characters naming this operation; the "
            "RFC 8941 quoted form is accepted too. Retries with the same key and request get "
            "the first response again instead of a second execution. Keys are scoped to the "
            "authenticated client and this endpoint."
        ),
    )
