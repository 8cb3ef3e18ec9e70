"""Plain Django doors: ``@idempotent_view`` for function views, ``IdempotentViewMixin`` for
class-based ones (``View``, ``FormView``, ``CreateView``), sync or async.

Both only gather the key, principal, scope, fingerprint and reference from the request, hand
the view to ``engine.perform_once`` and render its refusals: problem+json for JSON clients, an
HTML page for browsers. An async view gets the same single transaction as a sync one: the claim,
the view (driven through ``async_to_sync``) and the store run in one thread-sensitive block, so
the view's ``await Model.objects.acreate(...)`` lands on that thread's connection, inside it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import timedelta
from functools import wraps
from typing import Any, Literal, TypeVar, cast

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import router
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.request import RawPostDataException
from django.template.loader import render_to_string

from .conf import app_settings, as_timedelta
from .engine import Operation, perform_once
from .exceptions import IdempotencyError, MissingKey, PayloadTooLarge
from .fingerprint import read_body, request_fingerprint
from .issued_keys import key_expires_at, record_ttl, verify_issued_key
from .keys import parse_key
from .models import IdempotencyRecord
from .principals import request_principal
from .problems import error_response
from .references import storable

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
#: ``"any"``: a header key may be made by the client; ``"issued"``: only server-issued keys.
KeySource = Literal["any", "issued"]
#: ``"user"``: authenticated users only; ``"session"``: anonymous visitors by their session.
PrincipalSource = Literal["user", "session"]

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "json" in accept or "json" in (request.content_type or "")


def refusal_response(request: HttpRequest, error: IdempotencyError) -> HttpResponse:
    """problem+json for API clients, a short HTML page for a browser."""
    if wants_json(request):
        return error_response(error)
    html = render_to_string(
        "django_idempotency/refusal.html",
        {"title": error.title, "detail": error.detail, "back": request.get_full_path()},
        request=request,
    )
    response = HttpResponse(html, status=error.get_status_code())
    for name, value in error.headers.items():
        response[name] = value
    return response


class IdempotencyOptions:
    """The attributes and ``get_idempotency_*`` hooks both plain-Django doors share."""

    #: Refuse an unsafe request without a key (400). ``False``: it runs as usual.
    idempotency_key_required: bool = True
    #: ``"issued"``: refuse keys the server did not issue (400 ``invalid-issued-key``).
    idempotency_key_source: KeySource = "any"
    #: ``"session"``: anonymous visitors are told apart by their session (opt-in).
    idempotency_principal: PrincipalSource = "user"
    #: Endpoint part of the scope; default: the URL name (the template tag's default too).
    idempotency_scope: str | None = None
    #: Form/JSON field naming a business object that only one key may act on.
    idempotency_reference_field: str | None = None
    #: How long the answer is replayed; default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: timedelta | int | float | None = None
    #: Model the view writes; its database holds the record. Default: the view's ``model``.
    idempotency_model: type[Model] | None = None

    def get_idempotency_key(self, request: HttpRequest) -> tuple[str, bool] | None:
        """The key and whether it is server-issued (verified); ``None`` without a key.

        A key in the form field is always an issued key (the template tag renders it); a
        header key is one when the view requires issued keys.
        """
        header = request.headers.get(app_settings.HEADER)
        raw = header if header is not None else self._form_field(request)
        if raw is None and not self.idempotency_key_required:
            return None
        # Authentication first: an anonymous client learns nothing about keys.
        principal = self.get_idempotency_principal(request)
        key = parse_key(raw)
        if key is None:
            where = f"an {app_settings.HEADER} header"
            if request.content_type in _FORM_TYPES:
                where += f" or an issued key in the {app_settings.ISSUED_KEY_FIELD!r} field"
            raise MissingKey(f"This endpoint requires {where}.")
        issued = header is None or self.idempotency_key_source == "issued"
        # Only the signature (principal, endpoint) here: the engine judges the key's age, and
        # only for a claim that would start a new operation, so a retry of one that ran replays.
        if issued:
            verify_issued_key(
                key, principal=principal, endpoint=self.get_idempotency_endpoint(request)
            )
        return key, issued

    def get_idempotency_principal(self, request: HttpRequest) -> str:
        return request_principal(request, guest_sessions=self.idempotency_principal == "session")

    def get_idempotency_endpoint(self, request: HttpRequest) -> str:
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        match = request.resolver_match
        return match.view_name if match else type(self).__qualname__

    def get_idempotency_scope(self, request: HttpRequest) -> str:
        endpoint = self.get_idempotency_endpoint(request)
        return storable(f"{endpoint}|{self.get_idempotency_principal(request)}")

    def get_idempotency_reference(self, request: HttpRequest) -> str | None:
        name = self.idempotency_reference_field
        if name is None:
            return None
        value = self._form_value(request, name)
        if value is None or value == "":
            return None
        return storable(f"{name}:{self.normalise_idempotency_reference(name, value)}")

    def normalise_idempotency_reference(self, name: str, value: str) -> Any:
        """The value as the form would save it (``01`` and ``1`` are one order)."""
        get_form_class = getattr(self, "get_form_class", None)
        if get_form_class is None:
            return _integer_or_same(value)
        field = get_form_class().base_fields.get(name)
        if field is None:
            return _integer_or_same(value)
        try:
            cleaned = field.clean(value)
        except ValidationError:
            return value  # the form refuses it too, and the refusal releases the key
        return cleaned.pk if isinstance(cleaned, Model) else cleaned

    def get_idempotency_ttl(self, *, issued: bool) -> timedelta:
        own = self.idempotency_ttl
        ttl = app_settings.TTL if own is None else as_timedelta(own)
        return record_ttl(ttl) if issued else ttl

    def get_idempotency_database(self) -> str:
        model = self.idempotency_model or getattr(self, "model", None) or IdempotencyRecord
        return router.db_for_write(model) or "default"

    def idempotency_refusal(self, request: HttpRequest, error: IdempotencyError) -> HttpResponse:
        return refusal_response(request, error)

    def run_idempotently(
        self, request: HttpRequest, view: Callable[[], HttpResponseBase]
    ) -> HttpResponseBase:
        """Run ``view`` (which answers ``request``) at most once for the request's key."""
        try:
            _read_body_first(request)
            found = self.get_idempotency_key(request)
            if found is None:
                return view()
            key, issued = found
            operation = Operation(
                database=self.get_idempotency_database(),
                scope=self.get_idempotency_scope(request),
                key=key,
                fingerprint=request_fingerprint(request),
                method=request.method or "POST",
                path=request.get_full_path(),
                reference=self.get_idempotency_reference(request),
                ttl=self.get_idempotency_ttl(issued=issued),
                lock_timeout=app_settings.LOCK_TIMEOUT,
                key_expires_at=key_expires_at(key) if issued else None,
            )
            return perform_once(operation, view)
        except RequestDataTooBig as exc:
            return self.idempotency_refusal(request, PayloadTooLarge(str(exc)))
        except IdempotencyError as error:
            return self.idempotency_refusal(request, error)

    def _form_field(self, request: HttpRequest) -> str | None:
        value = self._form_value(request, app_settings.ISSUED_KEY_FIELD)
        return None if value is None else str(value)

    def _form_value(self, request: HttpRequest, name: str) -> Any:
        if request.content_type in _FORM_TYPES:
            return request.POST.get(name)
        if request.content_type == "application/json" and name != app_settings.ISSUED_KEY_FIELD:
            try:
                document = json.loads(read_body(request))
            except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                return None  # the view refuses it; nothing to reserve
            value = document.get(name) if isinstance(document, dict) else None
            # A string and a number naming one object are one reference; nested values none.
            return None if isinstance(value, (dict, list, bool)) else value
        return None


class IdempotentViewMixin(IdempotencyOptions):
    """Put first in the bases of a ``View``/``FormView``/``CreateView`` (after
    ``LoginRequiredMixin``, so an anonymous visitor is sent to log in before any key check)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        parent = super().dispatch  # type: ignore[misc]
        if request.method not in UNSAFE_METHODS:
            return parent(request, *args, **kwargs)
        if getattr(type(self), "view_is_async", False):
            return _run_async(self, request, lambda: parent(request, *args, **kwargs))
        return self.run_idempotently(request, lambda: parent(request, *args, **kwargs))

    def form_invalid(self, form: Any) -> HttpResponseBase:
        # "Fix and retry": a 400 releases the key instead of storing the error page, so the
        # corrected form can be sent again.
        response: HttpResponseBase = super().form_invalid(form)  # type: ignore[misc]
        if response.status_code == 200:
            response.status_code = 400
        return response


def idempotent_view(
    view: ViewFunc | None = None, **options: Any
) -> ViewFunc | Callable[[ViewFunc], ViewFunc]:
    """Make a function view exactly-once per key for unsafe methods.

    ``options`` are the ``idempotency_*`` attributes without their prefix, e.g.
    ``@idempotent_view(key_source="issued", reference_field="order")``.
    """

    def decorate(func: ViewFunc) -> ViewFunc:
        policy = make_policy(options)
        if iscoroutinefunction(func):

            @wraps(func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in UNSAFE_METHODS:
                    return await func(request, *args, **kwargs)
                return await _run_async(policy, request, lambda: func(request, *args, **kwargs))

            return cast(ViewFunc, markcoroutinefunction(async_wrapper))

        @wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in UNSAFE_METHODS:
                return func(request, *args, **kwargs)
            return policy.run_idempotently(request, lambda: func(request, *args, **kwargs))

        return cast(ViewFunc, wrapper)

    return decorate(view) if view is not None else decorate


def make_policy(options: dict[str, Any]) -> IdempotencyOptions:
    policy = IdempotencyOptions()
    for name, value in options.items():
        attribute = f"idempotency_{name}"
        if not hasattr(policy, attribute):
            raise TypeError(f"Unknown idempotency option {name!r}.")
        setattr(policy, attribute, value)
    return policy


async def _run_async(
    policy: IdempotencyOptions,
    request: HttpRequest,
    view: Callable[[], Awaitable[HttpResponseBase]],
) -> HttpResponseBase:
    """The async door: the whole claim-run-store in one thread-sensitive block.

    Cost: the request holds that thread (and its connection) while the view awaits, as a sync
    view would; the view's own thread-sensitive calls run on it, inside the transaction.
    """

    async def run_view() -> HttpResponseBase:
        return await view()

    def run() -> HttpResponseBase:
        return policy.run_idempotently(request, async_to_sync(run_view))

    return await sync_to_async(run, thread_sensitive=True)()


def _integer_or_same(value: Any) -> Any:
    """Without a form, any integer spelling (``"07"``, ``"+7"``, ``7.0``) is one reference, as
    to an integer lookup. Merging two values that really differ costs a 409, never a second run."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _read_body_first(request: HttpRequest) -> None:
    """Cache the raw body before the view parses the stream (the fingerprint needs it)."""
    # A multipart form the CSRF middleware already parsed is fingerprinted by its parts.
    with suppress(RawPostDataException):
        read_body(request)
