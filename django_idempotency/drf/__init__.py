"""Django REST framework adapter: ``@idempotent`` for any handler, the create mixin, and a
problem+json exception handler."""

from __future__ import annotations

import functools
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured, RequestDataTooBig
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError, router
from django.http import Http404, HttpResponseBase
from rest_framework import exceptions as drf_exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from ..conf import app_settings, as_timedelta
from ..core.endpoints import route_endpoint
from ..core.engine import perform_once, should_store
from ..core.fingerprint import read_body, request_fingerprint
from ..core.issued_keys import key_expires_at, record_ttl, verify_issued_key
from ..core.keys import parse_key
from ..core.operation import Operation
from ..core.principals import request_principal, scope_after_login
from ..core.problems import PROBLEM_CONTENT_TYPE, error_response, problem_document, status_title
from ..core.references import storable
from ..core.sessions import restore_session, session_key
from ..exceptions import (
    DatabaseUnavailable,
    IdempotencyError,
    KeyNotSupported,
    MissingKey,
    PayloadTooLarge,
)
from ..models import IdempotencyRecord
from .references import identity, reference_for

#: What ``@idempotent(...)`` accepts: each sets the ``idempotency_<name>`` attribute for the
#: decorated handler only.
OPTIONS = (
    "key_required",
    "key_source",
    "principal",
    "scope",
    "reference_field",
    "reference_url_kwarg",
    "reference_status_codes",
    "ttl",
    "release_status_codes",
    "extra_release_status_codes",
    "database",
)
# Marks a decorated handler (and, through the bound method, the view's handler for a request).
_MARK = "idempotency_options"
# Set on the request while a decorated handler runs, so a nested one does not claim again.
_ACTIVE = "_idempotency_active"

Handler = Callable[..., HttpResponseBase]
_H = TypeVar("_H", bound=Handler)

# What the handlers of DRF's generic views (``CreateAPIView.post`` ...) delegate to.
_GENERIC_ACTIONS = {
    "post": "create",
    "put": "update",
    "patch": "partial_update",
    "delete": "destroy",
}


class IdempotencyRefused(drf_exceptions.APIException):
    """A refusal of the idempotency layer as DRF sees it.

    Raised instead of the framework-free ``IdempotencyError`` so that the project's own
    ``EXCEPTION_HANDLER`` renders it like any other API error (DRF's default: ``{"detail":
    ...}``); ``problem_exception_handler`` renders ``error`` as problem+json.
    """

    def __init__(self, error: IdempotencyError):
        self.error = error
        self.status_code = error.get_status_code()
        self.default_code = error.default_code
        self.title = error.title
        retry_after = error.headers.get("Retry-After")
        if retry_after is not None:
            self.wait = int(retry_after)  # DRF's default handler turns it into Retry-After
        super().__init__(detail=error.detail, code=error.default_code)


def idempotent(**options: Any) -> Callable[[Handler], Handler]:
    """Make a DRF handler exactly-once per ``Idempotency-Key``.

    For any unsafe handler: an ``@action(methods=["post"])``, ``update``, ``partial_update``,
    ``destroy``, or an ``APIView``'s ``post``/``put``/``patch``/``delete``, on a view with
    ``IdempotentViewMixin`` (or ``IdempotentCreateMixin``) in its bases. The view's
    ``idempotency_*`` attributes and ``get_idempotency_*`` hooks apply; keyword arguments
    (any of ``OPTIONS``, without the ``idempotency_`` prefix) override the attributes for this
    handler only. Put it under ``@action``. Refusals are raised as ``IdempotencyRefused``.
    """
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise TypeError(f"idempotent() got unknown options: {', '.join(sorted(unknown))}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if getattr(request, _ACTIVE, False):
                return handler(view, request, *args, **kwargs)  # an outer handler claimed
            try:
                return _perform(view, handler, options, request, *args, **kwargs)
            except IdempotencyError as exc:
                raise IdempotencyRefused(exc) from exc
            except RequestDataTooBig as exc:
                raise IdempotencyRefused(PayloadTooLarge(str(exc))) from exc

        setattr(wrapper, _MARK, dict(options))
        return wrapper

    return decorate


def handler_options(view: Any, handler: Any) -> dict[str, Any] | None:
    """The ``@idempotent`` options that apply when ``handler`` answers for ``view``.

    DRF's generic views' handlers (``CreateAPIView.post`` ...) only delegate to the action
    (``create``), so that action is judged instead; so is a view's own handler in front of
    one of them (a ``post()`` calling ``super().post()``), which then runs under the action's
    options as a whole (``IdempotentViewMixin.initial``).
    """
    options = idempotent_options(handler)
    if options is not None:
        return options
    name = getattr(getattr(handler, "__func__", handler), "__name__", "")
    if name not in _GENERIC_ACTIONS or not _generic_handler(view, name):
        return None
    return idempotent_options(getattr(view, _GENERIC_ACTIONS[name], None))


def idempotent_options(handler: Any) -> dict[str, Any] | None:
    """The options of a handler decorated with ``@idempotent``; ``None`` when it is not."""
    options = getattr(handler, _MARK, None)
    return dict(options) if isinstance(options, dict) else None


class IdempotentViewMixin:
    """The attributes and ``get_idempotency_*`` hooks of every ``@idempotent`` handler.

    Also reads the raw body early for keyed requests and refuses a key on an unsafe handler
    that is not decorated (``idempotency_refuse_unwrapped_keys``).
    """

    #: Refuse a request without a key (400). ``False``: a request without a key runs as usual.
    #: Default ``None``: the ``IDEMPOTENCY_KEY_REQUIRED`` setting (True).
    idempotency_key_required: bool | None = None
    #: Name of the endpoint part of the scope; default: the route (``get_idempotency_endpoint``).
    idempotency_scope: str | None = None
    #: Request field holding a business reference (e.g. ``"order"``) that only one key may use.
    idempotency_reference_field: str | None = None
    #: URL keyword argument naming the business reference instead (e.g. ``"pk"`` for
    #: ``POST /payments/{pk}/refund/``: one refund per payment, whatever the key).
    idempotency_reference_url_kwarg: str | None = None
    #: Statuses whose answer completes the operation for its reference and holds it (leave out
    #: a gateway's redirect that paid nothing yet); default ``IDEMPOTENCY_REFERENCE_STATUS_CODES``
    #: (every 2xx).
    idempotency_reference_status_codes: Iterable[int] | None = None
    #: How long the response is replayed; default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: timedelta | int | float | None = None
    #: Statuses that release the key instead of storing the answer (every 5xx is released
    #: too); default ``IDEMPOTENCY_RELEASE_STATUS_CODES``. This list replaces the default.
    idempotency_release_status_codes: Iterable[int] | None = None
    #: Statuses released besides that list (e.g. ``{406}``): extends it, no copy needed.
    idempotency_extra_release_status_codes: Iterable[int] = ()
    #: Database alias of the record (it must be the one the view writes to); default: the
    #: router's answer for the ``queryset`` attribute's model, else for the record model.
    idempotency_database: str | None = None
    #: A key on an unsafe handler that is not ``@idempotent`` is a 400 problem; ``False``
    #: ignores such keys (the request then runs unprotected).
    idempotency_refuse_unwrapped_keys: bool = True
    #: ``"issued"``: accept only keys from the issuing view (``django_idempotency.urls``);
    #: any other key is a 400 ``invalid-issued-key`` problem. Default ``"any"``.
    idempotency_key_source: str = "any"
    #: ``"user"``: anonymous clients' keys are refused (403); ``"session"``: scoped to their own
    #: session (started on a guest's first keyed request). Default ``None``:
    #: ``IDEMPOTENCY_PRINCIPAL`` (``"user"``). The same option as the other doors'.
    idempotency_principal: str | None = None
    #: Deprecated alias: ``True`` is ``idempotency_principal = "session"``.
    idempotency_guest_sessions: bool | None = None

    request: Request

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "idempotency_guest_sessions" in cls.__dict__:
            warnings.warn(
                f"{cls.__qualname__}.idempotency_guest_sessions is deprecated: set "
                'idempotency_principal = "session" (or "user") instead.',
                DeprecationWarning,
                stacklevel=2,
            )

    # -- DRF hooks -----------------------------------------------------------------------

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        keyed = request.method not in SAFE_METHODS and _key_header(request) is not None
        if keyed:
            # Read the raw body before authentication runs: the CSRF check of session auth
            # parses the stream, after which the bytes the fingerprint needs are gone.
            read_body(request._request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in SAFE_METHODS:
            self._wrap_own_generic_handler(request)
        if keyed and self.idempotency_refuse_unwrapped_keys:
            self._refuse_unwrapped_key(request)

    def _wrap_own_generic_handler(self, request: Request) -> None:
        """A generic view's own ``post()`` (``put()`` ...) around DRF's reaches the protected
        ``create()`` (``update()`` ...) only inside: the whole handler runs once instead, under
        that action's options, so what it does before ``super().post()`` runs once too."""
        method = (request.method or "").lower()
        handler = getattr(self, method, None)
        function = getattr(handler, "__func__", None)
        if function is None or function.__module__ == "rest_framework.generics":
            return  # DRF's own handler only delegates to the protected action
        if idempotent_options(handler) is not None:
            return
        options = handler_options(self, handler)
        if options is not None:
            # DRF looks the handler up after initial(); the instance is this request's own.
            setattr(self, method, types.MethodType(idempotent(**options)(function), self))

    def _refuse_unwrapped_key(self, request: Request) -> None:
        """A key the layer would not honour is refused: silently ignoring it lets a client
        believe its retries are safe."""
        handler = getattr(self, (request.method or "").lower(), None)
        if handler is None or handler == getattr(self, "http_method_not_allowed", None):
            return  # DRF answers 405 itself
        if handler_options(self, handler) is None:
            raise KeyNotSupported(
                f"{request.method} on this endpoint does not process requests "
                f"idempotently; send it without the {app_settings.HEADER} header."
            )

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, RequestDataTooBig):
            exc = PayloadTooLarge(str(exc))
        if isinstance(exc, IdempotencyError):
            exc = IdempotencyRefused(exc)
        return super().handle_exception(exc)  # type: ignore[misc,no-any-return]

    # -- overridable hooks ---------------------------------------------------------------

    def get_idempotency_key(self, request: Request) -> str | None:
        """The key from the header, ``None`` without one (a 400 while a key is required)."""
        key = parse_key(_key_header(request))
        if key is None and self.get_idempotency_key_required():
            raise MissingKey(f"This endpoint requires an {app_settings.HEADER} header.")
        # ``idempotency_key_source = "issued"``: only keys from the issuing endpoint (400).
        # Their age is judged later, by the engine, and only for a claim that would start a
        # new operation: a retry of one that ran replays.
        if key is not None and _takes_issued_keys(self):
            verify_issued_key(
                key,
                principal=self.get_idempotency_principal(request),
                endpoint=self.get_idempotency_endpoint(request),
            )
        return key

    def get_idempotency_key_required(self) -> bool:
        """``idempotency_key_required``, else ``IDEMPOTENCY_KEY_REQUIRED``."""
        if self.idempotency_key_required is None:
            return app_settings.KEY_REQUIRED
        return bool(self.idempotency_key_required)

    def get_idempotency_principal(self, request: Request) -> str:
        """Whose keys these are: the user (``app_label.model:pk``, stateless JWT users too).

        Anonymous clients are refused, unless the principal is ``"session"``: then a guest's
        keys are bound to its session, which its first keyed request starts if it has none
        (the answer carries the cookie). A guest who logs in keeps its keys: see
        ``principals.scope_after_login``.
        """
        guest_sessions = self._idempotency_principal_option() == "session"
        return request_principal(request, guest_sessions=guest_sessions, start_session=True)

    def _idempotency_principal_option(self) -> str:
        principal = getattr(self, "idempotency_principal", None)
        if principal is not None:
            return str(principal)
        guest_sessions = getattr(self, "idempotency_guest_sessions", None)
        if guest_sessions is not None:  # the deprecated alias
            return "session" if guest_sessions else "user"
        return app_settings.PRINCIPAL

    def get_idempotency_endpoint(self, request: Request) -> str:
        """``idempotency_scope``, else the route: the URL name (``payment-list``; the pattern
        when unnamed), with the method in front unless it is POST (``DELETE payment-detail``)."""
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        return route_endpoint(request) or type(self).__qualname__

    def get_idempotency_scope(self, request: Request) -> str:
        """The principal plus the endpoint: one key, two users or routes, two operations."""
        endpoint = self.get_idempotency_endpoint(request)
        return _bounded(f"{endpoint}|{self.get_idempotency_principal(request)}") or ""

    def get_idempotency_reference(self, request: Request) -> str | None:
        """``"<field>:<identity>"``: what the serializer's field resolves the value to.

        The serializer is the view's, on every kind of view: ``get_serializer()``, else the
        ``serializer_class`` (or ``get_serializer_class()``) of an ``APIView``; without one, the
        value as sent. Any related field (primary key, hyperlinked, slug, custom) names the
        related object's primary key, so every spelling of one order is one reference; other
        fields name their internal value. A value the field refuses is a 400 before any lookup
        (see ``references.reference_for``).
        """
        url_kwarg = self.idempotency_reference_url_kwarg
        if url_kwarg is not None:
            value = getattr(self, "kwargs", {}).get(url_kwarg)
            if value is None:
                return None
            return f"{url_kwarg}:{self._normalised_pk(url_kwarg, value)}"
        name = self.idempotency_reference_field
        if name is None:
            return None
        return reference_for(name, request.data, self._serializer_field(name))

    def get_idempotency_reference_status_codes(self) -> frozenset[int]:
        """Statuses whose answer holds the reference: those that complete the operation."""
        if self.idempotency_reference_status_codes is None:
            return app_settings.REFERENCE_STATUS_CODES
        return frozenset(int(code) for code in self.idempotency_reference_status_codes)

    def get_idempotency_ttl(self) -> timedelta:
        """How long the response is replayed: ``idempotency_ttl``, else ``IDEMPOTENCY_TTL``."""
        if self.idempotency_ttl is None:
            return app_settings.TTL
        return as_timedelta(self.idempotency_ttl)

    def get_idempotency_release_status_codes(self) -> frozenset[int]:
        """Statuses that release the key: "nothing happened, fix and retry" for this view.

        ``idempotency_release_status_codes`` (else ``IDEMPOTENCY_RELEASE_STATUS_CODES``) plus
        ``idempotency_extra_release_status_codes``.
        """
        codes = self.idempotency_release_status_codes
        base = app_settings.RELEASE_STATUS_CODES if codes is None else codes
        extra = getattr(self, "idempotency_extra_release_status_codes", None) or ()
        return frozenset(int(code) for code in (*base, *extra))

    def get_idempotency_database(self) -> str:
        """The alias the view writes to; the record lives beside the business rows.

        Never calls ``get_queryset()``: in real projects it has side effects (creating a
        session basket, permission checks) or returns ``None`` on action views.
        """
        if self.idempotency_database is not None:
            return self.idempotency_database
        queryset = getattr(self, "queryset", None)
        model = getattr(queryset, "model", None) or IdempotencyRecord
        return router.db_for_write(model) or "default"

    # -- internals -----------------------------------------------------------------------

    def _normalised_reference(self, name: str, value: Any) -> Any:
        return identity(name, value, self._serializer_field(name))

    def _normalised_pk(self, url_kwarg: str, value: Any) -> Any:
        """``01`` and ``1`` in the URL name one row to the view's lookup, so one reference.

        The lookup field's own conversion is the one its query applies: an integer or UUID
        field (a public order number) canonicalises as the primary key does, a slug keeps it.
        """
        model = getattr(getattr(self, "queryset", None), "model", None)
        lookup_field = getattr(self, "lookup_field", None)
        lookup_kwarg = getattr(self, "lookup_url_kwarg", None) or lookup_field
        if model is None or url_kwarg != lookup_kwarg:
            return _integer_spelling(value)
        try:
            field = model._meta.pk if lookup_field == "pk" else model._meta.get_field(lookup_field)
        except FieldDoesNotExist:
            return value  # a lookup across relations (``order__number``): as sent
        to_python = getattr(field, "to_python", None)
        if to_python is None:
            return value  # a reverse relation: nothing to convert with
        try:
            return to_python(value)
        except (DjangoValidationError, TypeError, ValueError):
            return value  # the lookup answers 404, which releases the key

    def _serializer_field(self, name: str) -> Any:
        """The field that judges the reference: the same on every kind of view."""
        try:
            serializer = self._reference_serializer()
        except AssertionError:  # DRF's way of saying the view has no serializer_class
            return None
        return None if serializer is None else serializer.fields.get(name)

    def _reference_serializer(self) -> Any:
        get_serializer = getattr(self, "get_serializer", None)
        if get_serializer is not None:
            return get_serializer()
        # An APIView has no get_serializer(): the serializer class it declares (the one its
        # handler validates with, and the one schema generators read) judges instead.
        get_serializer_class = getattr(self, "get_serializer_class", None)
        if get_serializer_class is not None:
            serializer_class = get_serializer_class()
        else:
            serializer_class = getattr(self, "serializer_class", None)
        if serializer_class is None:
            return None
        context = {"request": self.request, "format": getattr(self, "format_kwarg", None)}
        return serializer_class(context={**context, "view": self})


class _DefinedBehind:
    """A mixin's method that exists on a view only when a class after the mixin in the view's
    bases defines it too (see ``_defined_behind``)."""

    def __init__(self, function: Handler) -> None:
        self.function = function
        functools.update_wrapper(self, function)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.mixin = owner
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        cls = owner if owner is not None else type(instance)
        mro = cls.__mro__
        if not any(self.name in vars(base) for base in mro[mro.index(self.mixin) + 1 :]):
            raise AttributeError(
                f"{cls.__qualname__} has no {self.name}() after {self.mixin.__qualname__}"
            )
        return self.function.__get__(instance, owner)


def _defined_behind(function: _H) -> _H:
    """``IdempotentCreateMixin`` on a ``ReadOnlyModelViewSet`` adds no ``create()``: the
    router then offers no POST and DRF answers 405, as without the mixin. (Typed as the
    function itself, so that a view's own ``create()`` still overrides a method.)"""
    return _DefinedBehind(function)  # type: ignore[return-value]


def _generic_handler(view: Any, method: str) -> bool:
    """``method`` of ``view`` is a DRF generic view's, or the view's own in front of one."""
    return any(
        base.__module__ == "rest_framework.generics" and method in vars(base)
        for base in type(view).__mro__
    )


class IdempotentCreateMixin(IdempotentViewMixin):
    """Make ``create()`` (POST) of a DRF view exactly-once per ``Idempotency-Key``.

    List it before the class that defines ``create()`` (``CreateModelMixin``, or your own):
    a ``create()`` defined on the view itself hides this one (system check
    ``django_idempotency.E007``); decorate such a ``create()`` with ``@idempotent()``.
    """

    @_defined_behind
    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return super().create(request, *args, **kwargs)  # type: ignore[misc,no-any-return]


def _configure(view: Any, options: Mapping[str, Any]) -> None:
    """Give this request's view instance the handler's options (DRF builds one per request)."""
    if not isinstance(view, IdempotentViewMixin):
        raise ImproperlyConfigured(
            f"{type(view).__qualname__} uses @idempotent: add IdempotentViewMixin to its bases "
            "(before the DRF view class) for the hooks and the early read of the body."
        )
    for name, value in options.items():
        setattr(view, f"idempotency_{name}", value)


def _perform(
    view: IdempotentViewMixin,
    handler: Handler,
    options: Mapping[str, Any],
    request: Request,
    *args: Any,
    **kwargs: Any,
) -> HttpResponseBase:
    _configure(view, options)
    key = view.get_idempotency_key(request)
    if key is None:
        return handler(view, request, *args, **kwargs)
    _avoid_html(view, request)
    database = view.get_idempotency_database()
    scope = scope_after_login(
        request,
        view.get_idempotency_scope(request),
        lambda: view.get_idempotency_scope(request),
        key=key,
        database=database,
    )
    operation = Operation(
        database=database,
        scope=scope,
        key=key,
        fingerprint=request_fingerprint(request._request),
        method=request.method or "POST",
        path=request.get_full_path(),
        reference=_bounded(view.get_idempotency_reference(request)),
        ttl=_ttl(view),
        lock_timeout=app_settings.LOCK_TIMEOUT,
        release_status_codes=frozenset(view.get_idempotency_release_status_codes()),
        key_expires_at=key_expires_at(key) if _takes_issued_keys(view) else None,
        reference_status_codes=frozenset(view.get_idempotency_reference_status_codes()),
    )
    api_view: Any = view  # an APIView: the mixin is in its bases
    finalize = api_view.finalize_response
    session_before = session_key(request._request)
    ran = False

    def run() -> HttpResponseBase:
        nonlocal ran
        ran = True
        return _rendered(view, handler, request, *args, **kwargs)

    setattr(request, _ACTIVE, True)
    try:
        response = perform_once(operation, run)
    finally:
        setattr(request, _ACTIVE, False)
    if ran and not should_store(response.status_code, operation.release_status_codes):
        # The release rolled back the view's writes, the client's session among them.
        restore_session(request._request, session_before, database)
    # The answer is final, a replay's stored bytes included: dispatch's finalize_response
    # must not run the view's own on it again.
    api_view.finalize_response = _finalized(finalize, response)
    return response


def _avoid_html(view: Any, request: Request) -> None:
    """Keyed requests are answered with the view's first non-HTML renderer, or refused.

    An HTML page (the browsable API) embeds the user's CSRF token, which must never be
    stored for the key's lifetime nor replayed; an API client's retry expects data anyway.
    """
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is None or not _is_html(renderer.media_type):
        return
    for candidate in view.get_renderers():
        if not _is_html(candidate.media_type):
            request.accepted_renderer = candidate
            request.accepted_media_type = candidate.media_type
            return
    # Only HTML renderers (TemplateHTMLRenderer): refused before the claim, nothing stored.
    raise KeyNotSupported(
        "This endpoint answers only with HTML pages, which embed the CSRF token and are never "
        f"stored; send the request without the {app_settings.HEADER} header."
    )


def _is_html(media_type: str) -> bool:
    return media_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _rendered(
    view: Any, handler: Handler, request: Request, *args: Any, **kwargs: Any
) -> HttpResponseBase:
    """Run the handler as DRF's dispatch would, and render it so its bytes can be stored.

    An exception DRF answers is treated as DRF treats it (the engine's savepoint undoes the
    view's writes when DRF marks a rollback under ``ATOMIC_REQUESTS``). ``finalize_response``
    runs here, once: dispatch's own call gets this response back untouched (``_perform``).
    """
    try:
        response = handler(view, request, *args, **kwargs)
    except Exception as exc:
        response = view.handle_exception(exc)  # re-raises what DRF does not answer
    response = view.finalize_response(request, response, *args, **kwargs)
    if isinstance(response, Response):
        response.render()
    return response  # type: ignore[no-any-return]


def _finalized(finalize: Callable[..., HttpResponseBase], done: HttpResponseBase) -> Handler:
    def finalize_response(
        request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if response is done:
            return response
        return finalize(request, response, *args, **kwargs)

    return finalize_response


def _integer_spelling(value: Any) -> Any:
    """A URL kwarg of an unknown model (a nested route's ``payment_pk``): spellings that
    ``int()`` reads as one number (``01``, ``+1``, `` 1``), as an integer primary key lookup
    does, are one reference. Fail safe: two slugs ``01`` and ``1`` then conflict (409)."""
    if not isinstance(value, str):
        return value
    try:
        return str(int(value))
    except ValueError:
        return value


def _key_header(request: Request) -> str | None:
    meta_name = "HTTP_" + app_settings.HEADER.upper().replace("-", "_")
    value = request.META.get(meta_name)
    return None if value is None else str(value)


def _bounded(value: str | None) -> str | None:
    """Values a column cannot hold (too long, NUL, lone surrogates) stay unique as a digest."""
    return None if value is None else storable(value)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    """DRF ``EXCEPTION_HANDLER`` that answers every API error as RFC 9457 problem+json."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc))
    if isinstance(exc, IdempotencyRefused):
        exc = exc.error
    if isinstance(exc, IdempotencyError):
        # As DRF's own handler does for every error it answers: under ATOMIC_REQUESTS the
        # request's transaction, a refusal's counter and event included, is rolled back.
        set_rollback()
        return error_response(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return error_response(DatabaseUnavailable())
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _problem_code(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = "The request has invalid fields; see errors."
        extra["errors"] = response.data
    elif isinstance(response.data, Mapping) and "detail" in response.data:
        detail = str(response.data["detail"])
    else:
        detail = str(response.data)
    response.data = problem_document(
        status=response.status_code,
        code=code,
        title=getattr(exc, "title", None) or status_title(response.status_code),
        detail=detail,
        **extra,
    )
    request = context.get("request")
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is None or isinstance(renderer, JSONRenderer):
        response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _ttl(view: IdempotentViewMixin) -> timedelta:
    ttl = view.get_idempotency_ttl()
    return record_ttl(ttl) if _takes_issued_keys(view) else ttl


def _takes_issued_keys(view: Any) -> bool:
    return getattr(view, "idempotency_key_source", "any") == "issued"


def _problem_code(exc: Exception) -> str:
    if isinstance(exc, Http404):
        return "not-found"
    if isinstance(exc, DjangoPermissionDenied):
        return "permission-denied"
    code = getattr(exc, "default_code", "error")
    return str(code).replace("_", "-")
