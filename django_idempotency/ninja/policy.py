"""The policy of one ninja operation: ``core.policy.HttpPolicy`` speaking ninja."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.operation import Operation as NinjaOperation
from ninja.params.models import BodyModel
from pydantic import TypeAdapter, ValidationError

from ..conf import app_settings
from ..core.endpoints import route_endpoint
from ..core.policy import HttpPolicy, json_member
from ..core.principals import user_principal
from ..core.problems import error_response
from ..exceptions import IdempotencyError


def problem_handler(request: HttpRequest, exc: Any) -> HttpResponse:
    """The exception handler for ``IdempotencyError``; installed on first use unless the API
    registered its own (``api.add_exception_handler(IdempotencyError, ...)``)."""
    return error_response(exc)


class NinjaPolicy(HttpPolicy):
    """The policy of one ninja operation: its auth's user, its route, its body schema."""

    idempotency_door = "ninja"

    def __init__(self, operation: NinjaOperation, own: frozenset[str] = frozenset()) -> None:
        self.operation = operation
        #: The options the operation's own decorator set: a router's do not replace them.
        self.own = own

    def get_idempotency_principal(self, request: HttpRequest) -> str:
        """The user ninja's auth returned (``request.auth``), else as on every door."""
        principal = user_principal(getattr(request, "auth", None))
        return principal or super().get_idempotency_principal(request)

    def get_idempotency_endpoint(self, request: HttpRequest) -> str:
        """``scope=``, else the route by its URL pattern: ninja names URLs after the function,
        and two routers' ``def create`` would share one name (and one scope)."""
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        found = route_endpoint(request, by_name=False)
        func = self.operation.view_func
        return found or f"{request.method} {func.__module__}.{func.__qualname__}"

    def normalise_idempotency_reference(self, name: str, value: Any) -> Any:
        """The value as the operation's body schema parses it (``"07"`` and ``7`` are one)."""
        for params in self.operation.models:
            for param in params.model_fields.values():
                fields = getattr(param.annotation, "model_fields", None)
                if not isinstance(fields, dict) or name not in fields:
                    continue
                try:
                    return TypeAdapter(fields[name].annotation).validate_python(value)
                except ValidationError:
                    return value  # the operation refuses it too, which releases the key
        return super().normalise_idempotency_reference(name, value)

    def _field_value(self, request: Any, name: str) -> Any:
        """A reference as ninja reads it: a body payload through the API's parser, which (like
        ninja's ``BodyModel``) ignores the Content-Type; form fields as on every door."""
        if name == app_settings.ISSUED_KEY_FIELD or not _reads_json_body(self.operation):
            return super()._field_value(request, name)
        try:
            document = self.operation.api.parser.parse_body(request)
        except Exception:  # the operation refuses such a body itself: nothing to reserve
            return None
        return json_member(document, name)

    def idempotency_refusal(self, request: HttpRequest, error: IdempotencyError) -> HttpResponse:
        api: NinjaAPI = self.operation.api
        if IdempotencyError not in getattr(api, "_exception_handlers", {IdempotencyError: 1}):
            api.add_exception_handler(IdempotencyError, problem_handler)
        return api.on_exception(request, error)


def _reads_json_body(operation: NinjaOperation) -> bool:
    """Whether ninja parses the operation's body with the API's parser (a ``Body`` payload),
    rather than reading form fields (``Form``, or a body sent along with ``File``)."""
    return any(
        issubclass(model, BodyModel) and not hasattr(model, "__ninja_body_params__")
        for model in operation.models
    )
