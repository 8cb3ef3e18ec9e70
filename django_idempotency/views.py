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
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from datetime import timedelta
from functools import wraps
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qsl

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import (
    ImproperlyConfigured,
    RequestDataTooBig,
    SuspiciousOperation,
    ValidationError,
)
from django.db import router
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.template.loader import render_to_string

from .conf import PRINCIPALS, app_settings, as_timedelta
from .core.endpoints import route_endpoint
from .core.engine import perform_once
from .core.fingerprint import read_body, request_fingerprint
from .core.issued_keys import key_expires_at, record_ttl, verify_issued_key
from .core.keys import parse_key
from .core.operation import Operation, current_operation
from .core.principals import carried_guest_principal, request_principal, scope_after_login
from .core.problems import error_response
from .core.references import storable
from .exceptions import IdempotencyError, InvalidIssuedKey, MissingKey, PayloadTooLarge
from .models import IdempotencyRecord

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
    """problem+json for API clients, a short HTML page for a browser.

    The page offers only what is safe after this refusal (``error.retry``): a button that
    sends this same submission again (same key, same fields), or a fresh form only when nothing
    ran; following it never performs an operation twice.
    """
    if wants_json(request):
        return error_response(error)
    html = render_to_string(
        "django_idempotency/refusal.html",
        {
            "title": error.title,
            "detail": error.detail,
            "retry": error.retry,
            "retry_after": error.headers.get("Retry-After"),
            "action": request.get_full_path(),
            "enctype": request.content_type,
            "fields": _resendable_fields(request) if error.retry == "same" else None,
        },
        request=request,
    )
    response = HttpResponse(html, status=error.get_status_code())
    for name, value in error.headers.items():
        response[name] = value
    # The page may repeat the submitted fields: no cache may keep them.
    response["Cache-Control"] = "no-store"
    return response


def _resendable_fields(request: HttpRequest) -> list[tuple[str, str]] | None:
    """The submitted form fields, in order, for a page that posts them again unchanged.

    ``None`` when an HTML form cannot repeat the request: not a POSTed form, a form with
    files, or a key in a header (a page cannot resend headers).
    """
    if request.method != "POST" or request.content_type not in _FORM_TYPES:
        return None
    if request.headers.get(app_settings.HEADER):
        return None
    # A body that cannot be read back as fields gets the "reload the page" advice instead.
    with suppress(ValueError, LookupError, SuspiciousOperation, MultiPartParserError):
        if request.content_type == "application/x-www-form-urlencoded":
            with suppress(RawPostDataException):
                # The raw body keeps the fields' order, which its fingerprint depends on.
                text = request.body.decode(request.encoding or settings.DEFAULT_CHARSET)
                return parse_qsl(text, keep_blank_values=True)
        if request.FILES:
            return None
        return [(name, value) for name, values in request.POST.lists() for value in values]
    return None


class IdempotencyOptions:
    """The attributes and ``get_idempotency_*`` hooks both plain-Django doors share."""

    #: Refuse an unsafe request without a key (400). ``False``: it runs as usual.
    #: Default ``None``: the ``IDEMPOTENCY_KEY_REQUIRED`` setting (True).
    idempotency_key_required: bool | None = None
    #: ``"issued"``: refuse keys the server did not issue (400 ``invalid-issued-key``).
    idempotency_key_source: KeySource = "any"
    #: ``"session"``: anonymous visitors are told apart by their session (opt-in). Default
    #: ``None``: the ``IDEMPOTENCY_PRINCIPAL`` setting (``"user"``).
    idempotency_principal: PrincipalSource | None = None
    #: Endpoint part of the scope; default: the route (URL name, else pattern; the method in
    #: front unless POST), the template tag's default too.
    idempotency_scope: str | None = None
    #: Form/JSON field naming a business object that only one key may act on.
    idempotency_reference_field: str | None = None
    #: How long the answer is replayed; default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: timedelta | int | float | None = None
    #: Model the view writes; its database holds the record. Default: the view's ``model``.
    idempotency_model: type[Model] | None = None
    #: Statuses (besides every 5xx) that release the key; default
    #: ``IDEMPOTENCY_RELEASE_STATUS_CODES``. This list replaces the default.
    idempotency_release_status_codes: Iterable[int] | None = None
    #: Statuses released besides that list (e.g. ``{406}``): extends it, no copy needed.
    idempotency_extra_release_status_codes: Iterable[int] = ()

    def get_idempotency_key(self, request: HttpRequest) -> tuple[str, bool] | None:
        """The key and whether it is server-issued (verified); ``None`` without a key.

        A key in the form field is always an issued key (the template tag renders it); a
        header key is one when the view requires issued keys.
        """
        header = request.headers.get(app_settings.HEADER)
        raw = header if header is not None else self._form_field(request)
        if raw is None and not self.get_idempotency_key_required():
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
            self._verify_issued_key(request, key, principal)
        return key, issued

    def _verify_issued_key(self, request: HttpRequest, key: str, principal: str) -> None:
        endpoint = self.get_idempotency_endpoint(request)
        try:
            verify_issued_key(key, principal=principal, endpoint=endpoint)
        except InvalidIssuedKey:
            # A key issued to the guest this user was before logging in (the form was sent as
            # a guest, the answer lost): its retry is the guest's, ``scope_after_login`` finds
            # its record. Refusing it would send them to a fresh form, and a second run.
            guest = carried_guest_principal(request) if self._guest_sessions() else None
            if guest is None:
                raise
            verify_issued_key(key, principal=guest, endpoint=endpoint)

    def _guest_sessions(self) -> bool:
        return (self.idempotency_principal or app_settings.PRINCIPAL) == "session"

    def get_idempotency_key_required(self) -> bool:
        """``idempotency_key_required``, else ``IDEMPOTENCY_KEY_REQUIRED``."""
        if self.idempotency_key_required is None:
            return app_settings.KEY_REQUIRED
        return bool(self.idempotency_key_required)

    def get_idempotency_principal(self, request: HttpRequest) -> str:
        """The user; with the ``"session"`` principal, else the guest's session.

        A guest's first request may be the keyed one: a header key that needs no issuing
        starts the session (a key issued to a form names a session that already exists).
        """
        header_key = request.headers.get(app_settings.HEADER) is not None
        return request_principal(
            request,
            guest_sessions=self._guest_sessions(),
            start_session=header_key and self.idempotency_key_source != "issued",
        )

    def get_idempotency_endpoint(self, request: HttpRequest) -> str:
        """``idempotency_scope``, else the route (``endpoints.route_endpoint``): its URL name,
        or its pattern when unnamed, with the method in front unless it is POST."""
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        return route_endpoint(request) or type(self).__qualname__

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

    def get_idempotency_release_status_codes(self) -> frozenset[int]:
        """``idempotency_release_status_codes`` (else the setting) plus the extra ones."""
        codes = self.idempotency_release_status_codes
        base = app_settings.RELEASE_STATUS_CODES if codes is None else codes
        extra = self.idempotency_extra_release_status_codes or ()
        return frozenset(int(code) for code in (*base, *extra))

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
            database = self.get_idempotency_database()
            scope = scope_after_login(
                request,
                self.get_idempotency_scope(request),
                lambda: self.get_idempotency_scope(request),
                key=key,
                database=database,
            )
            operation = Operation(
                database=database,
                scope=scope,
                key=key,
                fingerprint=request_fingerprint(request),
                method=request.method or "POST",
                path=request.get_full_path(),
                reference=self.get_idempotency_reference(request),
                ttl=self.get_idempotency_ttl(issued=issued),
                lock_timeout=app_settings.LOCK_TIMEOUT,
                release_status_codes=self.get_idempotency_release_status_codes(),
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
            return json_member(document, name)
        return None


def json_member(document: Any, name: str) -> Any:
    """The reference member ``name`` of a parsed JSON body; ``None`` for none."""
    value = document.get(name) if isinstance(document, dict) else None
    # A string and a number naming one object are one reference; nested values none.
    return None if isinstance(value, (dict, list, bool)) else value


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
        # corrected form can be sent again. Only under a key: without one the view answers
        # exactly as it would without this package.
        response: HttpResponseBase = super().form_invalid(form)  # type: ignore[misc]
        if response.status_code == 200 and current_operation() is not None:
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
        _refuse_idempotent(func)
        if iscoroutinefunction(func):

            @wraps(func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in UNSAFE_METHODS:
                    return await func(request, *args, **kwargs)
                return await _run_async(policy, request, lambda: func(request, *args, **kwargs))

            return cast(ViewFunc, _mark_idempotent(markcoroutinefunction(async_wrapper)))

        @wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in UNSAFE_METHODS:
                return func(request, *args, **kwargs)
            return policy.run_idempotently(request, lambda: func(request, *args, **kwargs))

        return cast(ViewFunc, _mark_idempotent(wrapper))

    return decorate(view) if view is not None else decorate


#: Set on a view ``idempotent_view`` made; ``functools.wraps`` carries it through decorators.
_IDEMPOTENT_VIEW = "_idempotency_view"


def _mark_idempotent(wrapper: Any) -> Any:
    setattr(wrapper, _IDEMPOTENT_VIEW, True)
    return wrapper


def _refuse_idempotent(func: Any) -> None:
    """A view that already claims its key must not be wrapped in a second claim: the inner one
    meets the outer one's row, in flight in the same transaction, and every request is a 409."""
    view_class = getattr(func, "view_class", None) or getattr(func, "cls", None)
    if getattr(func, _IDEMPOTENT_VIEW, False) or hasattr(view_class, "get_idempotency_key"):
        raise ImproperlyConfigured(
            f"{getattr(func, '__qualname__', func)!r} is already idempotent (idempotent_view, "
            "or a view class with the package's mixin): decorate it once."
        )


def make_policy(options: dict[str, Any]) -> IdempotencyOptions:
    policy = IdempotencyOptions()
    for name, value in options.items():
        attribute = f"idempotency_{name}"
        if not hasattr(policy, attribute):
            raise TypeError(f"Unknown idempotency option {name!r}.")
        setattr(policy, attribute, value)
    if policy.idempotency_principal not in (None, *PRINCIPALS):
        # A typo would silently mean "user": guests then get 403s nobody can explain.
        raise ValueError(
            f"principal must be one of {PRINCIPALS}, not {policy.idempotency_principal!r}."
        )
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
