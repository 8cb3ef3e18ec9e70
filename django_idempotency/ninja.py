"""django-ninja door (``pip install django-idempotency[ninja]``).

``@idempotent()`` under ``@api.post(...)`` (or ``idempotent_router(router)``) makes an operation
exactly-once per key, sync or ``async def``. ninja's auth runs first (an unauthenticated request
never reaches the key), then the engine claims the key and runs ninja's own ``run`` (parameter
validation, the operation, rendering) inside the claim's transaction. Refusals go through the
API's exception handlers as problem+json, and the operation's OpenAPI entry documents the header
and the answers.

Cost: a new key authenticates twice (once before the claim, once in ninja's ``run``); a replay
or refusal once. An ``async def`` operation runs, with the claim and the store, in one
thread-sensitive block (``sync_to_async`` around ``async_to_sync``), so its
``await Model.objects.acreate(...)`` joins the transaction; the request holds that thread and its
connection while it awaits, as a sync operation would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from ninja import NinjaAPI, Router
from ninja.decorators import decorate_view
from ninja.operation import Operation as NinjaOperation
from ninja.params.models import BodyModel
from pydantic import TypeAdapter, ValidationError

from .conf import app_settings
from .core.endpoints import route_endpoint
from .core.keys import MAX_KEY_LENGTH
from .core.principals import user_principal
from .core.problems import PROBLEM_CONTENT_TYPE, error_response
from .core.responses import REPLAYED_HEADER
from .exceptions import IdempotencyError
from .views import UNSAFE_METHODS, IdempotencyOptions, json_member, make_policy

Func = TypeVar("Func", bound=Callable[..., Any])


def idempotent(**options: Any) -> Callable[[Func], Func]:
    """Decorate one operation; ``options`` as for ``idempotent_view`` (``key_required``,
    ``key_source``, ``principal``, ``scope``, ``reference_field``, ``ttl``,
    ``release_status_codes``, ``extra_release_status_codes``, ``model``).

    Under ``idempotent_router()`` too, the operation still claims once: its own options win,
    the router's fill in the rest."""
    return decorate_view(IdempotentRun(**options))


def idempotent_router(router: Router, **options: Any) -> Router:
    """Every POST/PUT/PATCH/DELETE operation of ``router`` (safe methods pass through)."""
    router.add_decorator(IdempotentRun(**options), mode="view")
    return router


def problem_handler(request: HttpRequest, exc: Any) -> HttpResponse:
    """The exception handler for ``IdempotencyError``; installed on first use unless the API
    registered its own (``api.add_exception_handler(IdempotencyError, ...)``)."""
    return error_response(exc)


class _NinjaPolicy(IdempotencyOptions):
    def __init__(self, operation: NinjaOperation) -> None:
        self.operation = operation

    def get_idempotency_principal(self, request: HttpRequest) -> str:
        """The user ninja's auth returned (``request.auth``), else the session's user; with
        the ``"session"`` principal, else the guest's session (as on the other doors)."""
        principal = user_principal(getattr(request, "auth", None))
        return principal or super().get_idempotency_principal(request)

    def get_idempotency_endpoint(self, request: HttpRequest) -> str:
        """``scope=``, else the route by its URL pattern: ninja names URLs after the function,
        and two routers' ``def create`` would share one name (and one scope)."""
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        found = route_endpoint(request, by_name=False)
        if found is not None:
            return found
        func = self.operation.view_func
        return f"{request.method} {func.__module__}.{func.__qualname__}"

    def _form_value(self, request: HttpRequest, name: str) -> Any:
        """A reference as ninja reads it: a body payload through the API's parser, which (like
        ninja's ``BodyModel``) ignores the Content-Type; form fields from ``request.POST``."""
        if name == app_settings.ISSUED_KEY_FIELD or not _reads_json_body(self.operation):
            return super()._form_value(request, name)
        try:
            document = self.operation.api.parser.parse_body(request)
        except Exception:
            return None
        return json_member(document, name)

    def normalise_idempotency_reference(self, name: str, value: str) -> Any:
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
        return value

    def idempotency_refusal(self, request: HttpRequest, error: IdempotencyError) -> HttpResponse:
        api: NinjaAPI = self.operation.api
        if IdempotencyError not in getattr(api, "_exception_handlers", {IdempotencyError: 1}):
            api.add_exception_handler(IdempotencyError, problem_handler)
        return api.on_exception(request, error)


class IdempotentRun:
    """A ninja "view" decorator: wraps ``Operation.run``."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        make_policy(options)  # unknown options fail here, at import time

    def __call__(self, run: Callable[..., Any]) -> Callable[..., Any]:
        claimed: _Claimed | None = getattr(run, _CLAIMED, None)
        if claimed is not None:
            # Already idempotent (``@idempotent()`` under ``idempotent_router()``): one claim
            # per request, or the second would find the first's row in flight (409). The
            # operation's own options win; the router's fill in the rest.
            claimed.add_defaults(self.options)
            return run
        operation = _operation_of(run)
        if not UNSAFE_METHODS.intersection(operation.methods):
            return run
        policy = _NinjaPolicy(operation)
        for name, value in self.options.items():
            setattr(policy, f"idempotency_{name}", value)
        # The OpenAPI entry is built now: it reads IDEMPOTENCY_KEY_REQUIRED when decorating.
        _document(operation, required=policy.get_idempotency_key_required())
        wrapped = self._wrap(run, operation, policy)
        setattr(wrapped, _CLAIMED, _Claimed(operation, policy, set(self.options)))
        return wrapped

    def _wrap(
        self, run: Callable[..., Any], operation: NinjaOperation, policy: _NinjaPolicy
    ) -> Callable[..., Any]:
        if iscoroutinefunction(run):

            @wraps(run)
            async def async_run(request: HttpRequest, **kw: Any) -> HttpResponseBase:
                if operation.auth_callbacks:
                    refused = await operation._run_authentication(request)  # type: ignore[misc]
                    if refused:
                        return refused  # type: ignore[no-any-return]

                async def view() -> HttpResponseBase:
                    return await run(request, **kw)  # type: ignore[no-any-return]

                def in_one_thread() -> HttpResponseBase:
                    return policy.run_idempotently(request, async_to_sync(view))

                return await sync_to_async(in_one_thread, thread_sensitive=True)()

            return async_run

        @wraps(run)
        def sync_run(request: HttpRequest, **kw: Any) -> HttpResponseBase:
            if operation.auth_callbacks:
                refused = operation._run_authentication(request)
                if refused:
                    return refused
            return policy.run_idempotently(request, lambda: run(request, **kw))

        return sync_run


#: Marks a ``run`` that claims keys (``functools.wraps`` copies it onto outer wrappers).
_CLAIMED = "_idempotency_claimed"


class _Claimed:
    """The policy of an idempotent ``run``, for a second decorator to extend, not repeat."""

    def __init__(self, operation: NinjaOperation, policy: _NinjaPolicy, own: set[str]) -> None:
        self.operation = operation
        self.policy = policy
        self.own = own

    def add_defaults(self, options: dict[str, Any]) -> None:
        for name, value in options.items():
            if name not in self.own:
                setattr(self.policy, f"idempotency_{name}", value)
        _document(self.operation, required=self.policy.get_idempotency_key_required())


def _reads_json_body(operation: NinjaOperation) -> bool:
    """Whether ninja parses the operation's body with the API's parser (a ``Body`` payload),
    rather than reading form fields (``Form``, or a body sent along with ``File``)."""
    return any(
        issubclass(model, BodyModel) and not hasattr(model, "__ninja_body_params__")
        for model in operation.models
    )


def _operation_of(run: Callable[..., Any]) -> NinjaOperation:
    """The operation whose bound ``run`` is (or is wrapped, via ``__wrapped__``, in) ``run``."""
    for candidate in (run, inspect.unwrap(run)):
        operation = getattr(candidate, "__self__", None)
        if isinstance(operation, NinjaOperation):
            return operation
    raise ImproperlyConfigured(
        f"django-idempotency cannot find the ninja operation behind {run!r}: a view decorator "
        "applied before it must keep functools.wraps (``__wrapped__``)."
    )


def _document(operation: NinjaOperation, *, required: bool) -> None:
    """The header and the refusals in the operation's OpenAPI entry (ninja merges these)."""
    problem = {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    }

    def refusal(text: str) -> dict[str, Any]:
        return {"description": text, "content": {PROBLEM_CONTENT_TYPE: {"schema": problem}}}

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
