"""The ``Idempotency-Key`` header and the refusals in an idempotent operation's OpenAPI entry."""

from __future__ import annotations

from typing import Any

from ninja.operation import Operation

from ..conf import app_settings
from ..core.keys import MAX_KEY_LENGTH
from ..core.problems import PROBLEM_CONTENT_TYPE
from ..core.responses import REPLAYED_HEADER

_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def document(operation: Operation, *, required: bool) -> None:
    """Add the header and the refusals to ``operation.openapi_extra`` (ninja merges these)."""

    def refusal(text: str) -> dict[str, Any]:
        return {"description": text, "content": {PROBLEM_CONTENT_TYPE: {"schema": _PROBLEM}}}

    responses = {
        "400": refusal("The Idempotency-Key is missing (where required) or invalid."),
        "409": refusal(
            "The original request with this key is still running (retry after Retry-After "
            "seconds), or another key already performed this operation."
        ),
        str(app_settings.MISMATCH_STATUS): refusal(
            "The key was used before with a different method, path or body."
        ),
    }
    extra = dict(operation.openapi_extra or {})
    parameters = [
        parameter
        for parameter in extra.get("parameters", [])
        # ninja re-applies the decorator to the clone of a mounted operation: replace, not add.
        if (parameter.get("in"), parameter.get("name")) != ("header", app_settings.HEADER)
    ]
    extra["parameters"] = [
        *parameters,
        {
            "in": "header",
            "name": app_settings.HEADER,
            "required": required,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
            "description": (
                "Names this operation: retries with the same key and request get the first "
                f"response again, marked with {REPLAYED_HEADER}: true."
            ),
        },
    ]
    extra["responses"] = {**responses, **extra.get("responses", {})}
    operation.openapi_extra = extra
