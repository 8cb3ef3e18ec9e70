"""OpenAPI documentation of idempotent operations for drf-spectacular (optional).

Import this module only where drf-spectacular is installed, e.g.::

    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "django_idempotency.drf.schema.IdempotentAutoSchema"}

Every idempotent operation (``create()`` of a view using ``IdempotentCreateMixin``, and every
``@idempotent`` handler) then documents the ``Idempotency-Key`` request header, the
``Idempotent-Replayed`` response header, and the answers the layer gives (400, 403, 409 with
``Retry-After``, 413, 422) in the shape the configured ``EXCEPTION_HANDLER`` renders them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import get_doc
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from ..conf import app_settings
from ..core.problems import PROBLEM_CONTENT_TYPE
from ..core.responses import REPLAYED_HEADER
from . import (
    IdempotentAPIViewMixin,
    IdempotentCreateMixin,
    handler_options,
    problem_exception_handler,
)
from .openapi import ProblemSerializer, idempotency_key_parameter


class IdempotentAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema`` plus the idempotency layer's header and answers."""

    def idempotency_options(self) -> dict[str, Any] | None:
        """The ``@idempotent`` options of this operation's handler; ``None`` when it is not one."""
        if not isinstance(self.view, IdempotentAPIViewMixin) or self.method in SAFE_METHODS:
            return None
        action = getattr(self.view, "action", None)
        handler = getattr(self.view, action or self.method.lower(), None)
        return handler_options(self.view, handler)

    def is_idempotent_operation(self) -> bool:
        return self.idempotency_options() is not None

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        options = self.idempotency_options()
        if options is not None:
            required = options.get("key_required")
            if required is None:
                view: Any = self.view  # the mixin is in its bases (idempotency_options)
                required = view.get_idempotency_key_required()
            parameters.append(idempotency_key_parameter(required=bool(required)))
        return parameters

    def get_description(self) -> str:  # type: ignore[override]  # as drf-spectacular's
        description = str(super().get_description())
        # A view without a docstring of its own inherits the mixin's, which is about the code,
        # not about the API.
        mixins = (get_doc(IdempotentCreateMixin), get_doc(IdempotentAPIViewMixin))
        return "" if description in mixins else description

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: Any
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        # Added after the fact, so an ``extend_schema(responses=...)`` on the view, which
        # replaces ``get_response_serializers()``, still gets them.
        if operation is not None and self.is_idempotent_operation():
            self._document_answers(operation["responses"])
        return operation

    def _document_answers(self, responses: dict[str, Any]) -> None:
        for code, response in responses.items():
            if code.startswith("2"):
                response.setdefault("headers", {})[REPLAYED_HEADER] = {
                    "schema": {"type": "string", "enum": ["true"]},
                    "description": "Present when this is the stored response of an earlier "
                    "request with the same key, replayed byte for byte.",
                }
        answers: dict[str, list[str]] = {
            "400": [
                "The Idempotency-Key header is missing (where required) or invalid, or the "
                "request itself is invalid. Nothing was stored: fix the request and retry."
            ],
            "403": [
                "Idempotency keys are scoped to an authenticated client: authenticate and send "
                "the request again with the same key."
            ],
            "413": ["The request body is larger than this server accepts."],
            "409": [
                "The original request with this key is still running (send the same request "
                "with the same key after Retry-After seconds, never under a new key), or "
                "another key already performed this operation (do not send it again)."
            ],
        }
        answers.setdefault(str(app_settings.MISMATCH_STATUS), []).append(
            "The key was used before with a different method, path or body; that request "
            "was performed. To retry it, send it unchanged; a new key only for a new operation."
        )
        media_type, schema = self._error_body()
        for code, texts in answers.items():
            description = " ".join(texts)
            response = responses.setdefault(code, {"description": description})
            response.setdefault("content", {})[media_type] = {"schema": schema}
            if not response.get("description"):
                response["description"] = description
        responses["409"].setdefault("headers", {})["Retry-After"] = {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds to wait before retrying, when the original is still running.",
        }

    def _error_body(self) -> tuple[str, dict[str, Any]]:
        """What the configured ``EXCEPTION_HANDLER`` makes of a refusal: its media type and
        schema (problem+json with ours, ``{"detail"}`` with DRF's, an object otherwise)."""
        handler = api_settings.EXCEPTION_HANDLER
        if handler is problem_exception_handler:
            return PROBLEM_CONTENT_TYPE, self.resolve_serializer(ProblemSerializer, "response").ref
        if handler is drf_exception_handler:
            return "application/json", {
                "type": "object",
                "properties": {"detail": {"type": "string"}},
                "required": ["detail"],
            }
        return "application/json", {
            "type": "object",
            "description": "Rendered by the project's EXCEPTION_HANDLER.",
        }
