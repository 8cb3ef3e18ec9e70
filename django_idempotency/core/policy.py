"""One HTTP policy for every door: a Django request in, the engine's ``Operation`` out.

``HttpPolicy`` holds the options (``idempotency_*`` attributes) and the ``get_idempotency_*``
hooks that the DRF, plain-Django and ninja doors share, under the same names and with the same
signatures; each door subclasses it and only speaks its framework (where the key, the user and
a reference are read from, and how a refusal is rendered). Framework-free: Django only.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from datetime import timedelta
from typing import Any, Literal

from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.db import router
from django.db.models import Model
from django.http import HttpRequest, HttpResponseBase
from django.http.request import RawPostDataException

from ..conf import PRINCIPALS, app_settings, as_timedelta
from ..exceptions import IdempotencyError, InvalidIssuedKey, MissingKey, PayloadTooLarge
from ..models import IdempotencyRecord
from .endpoints import route_endpoint
from .engine import perform_once, should_store
from .fingerprint import read_body, request_fingerprint
from .issued_keys import key_expires_at, record_ttl, verify_issued_key
from .keys import parse_key
from .operation import Operation
from .principals import carried_guest_principal, request_principal, scope_after_login
from .references import storable
from .sessions import restore_session, session_key

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
#: ``"any"``: a header key may be made by the client; ``"issued"``: only server-issued keys.
KeySource = Literal["any", "issued"]
#: ``"user"``: authenticated users only; ``"session"``: guests too, by their session.
PrincipalSource = Literal["user", "session"]
KEY_SOURCES: tuple[str, ...] = ("any", "issued")
#: Every door's options: a decorator's keyword is the attribute without ``idempotency_``.
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
    "lock_timeout",
)
#: Old option names, still honoured: what each became.
DEPRECATED_OPTIONS = {"guest_sessions": 'principal="session"', "model": "database"}
View = Callable[[], HttpResponseBase]
#: What a door answers as a refusal (``as_refusal``): the layer's own, and a body too large.
REFUSALS = (IdempotencyError, RequestDataTooBig)


class HttpPolicy:
    """The ``idempotency_*`` options and ``get_idempotency_*`` hooks of every HTTP door."""

    #: Refuse an unsafe request without a key (400). ``False``: it runs as usual.
    #: Default ``None``: the ``IDEMPOTENCY_KEY_REQUIRED`` setting (True).
    idempotency_key_required: bool | None = None
    #: ``"issued"``: accept only keys the server issued (``django_idempotency.urls``, the
    #: template tag); any other is a 400 ``invalid-issued-key`` problem. Default ``"any"``.
    idempotency_key_source: KeySource = "any"
    #: ``"user"``: anonymous clients' keys are refused (403); ``"session"``: scoped to their own
    #: session (started on a guest's first keyed request). Default ``None``:
    #: ``IDEMPOTENCY_PRINCIPAL`` (``"user"``).
    idempotency_principal: PrincipalSource | None = None
    #: Name of the endpoint part of the scope; default: the route (``get_idempotency_endpoint``).
    idempotency_scope: str | None = None
    #: The door's name on metrics and traces (``core/observers.py``); each door sets its own.
    idempotency_door: str = "django"
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
    #: router's answer for the view's ``model`` (or its ``queryset``'s), else for the record's.
    idempotency_database: str | None = None
    #: Seconds a copy waits for the original to finish before its 409; default
    #: ``IDEMPOTENCY_LOCK_TIMEOUT``.
    idempotency_lock_timeout: float | None = None
    #: Deprecated alias: ``True`` is ``idempotency_principal = "session"``.
    idempotency_guest_sessions: bool | None = None
    #: Deprecated alias: the model whose database holds the record; use ``idempotency_database``.
    idempotency_model: type[Model] | None = None

    #: Whether a form's ``IDEMPOTENCY_ISSUED_KEY_FIELD`` carries an issued key (HTML forms).
    reads_form_keys = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for old, new in DEPRECATED_OPTIONS.items():
            if f"idempotency_{old}" in cls.__dict__:
                warn_deprecated(f"{cls.__qualname__}.idempotency_{old}", f"idempotency_{new}")

    # -- the hooks, the same on every door -----------------------------------------------

    def get_idempotency_key(self, request: Any) -> str | None:
        """The key (header, else an issued key in the form field); ``None`` without one.

        The principal comes first (an anonymous client learns nothing about keys); an issued
        key's signature (principal, endpoint) is verified here, its age later by the engine,
        and only for a claim that would start a new operation: a retry of one that ran replays.
        """
        raw = self.raw_idempotency_key(request)
        if raw is None and not self.get_idempotency_key_required():
            return None
        principal = self.get_idempotency_principal(request)
        key = parse_key(raw)
        if key is None:
            where = f"an {app_settings.HEADER} header"
            if self.reads_form_keys and request.content_type in FORM_TYPES:
                where += f" or an issued key in the {app_settings.ISSUED_KEY_FIELD!r} field"
            raise MissingKey(f"This endpoint requires {where}.")
        if self.idempotency_key_is_issued(request):
            self._verify_issued_key(request, key, principal)
        return key

    def get_idempotency_key_required(self) -> bool:
        """``idempotency_key_required``, else ``IDEMPOTENCY_KEY_REQUIRED``."""
        if self.idempotency_key_required is None:
            return app_settings.KEY_REQUIRED
        return bool(self.idempotency_key_required)

    def get_idempotency_principal(self, request: Any) -> str:
        """Whose keys these are: the user (``app_label.model:pk``, stateless JWT users too).

        Anonymous clients are refused, unless the principal is ``"session"``: then a guest's
        keys are bound to its session. A header key that needs no issuing may be a guest's
        first request: it starts the session (the answer carries the cookie); a key issued to
        a form names a session that exists. A guest who logs in keeps its keys.
        """
        header = raw_header_key(request) is not None
        return request_principal(
            request,
            guest_sessions=self.principal_option() == "session",
            start_session=header and self.idempotency_key_source != "issued",
        )

    def get_idempotency_endpoint(self, request: Any) -> str:
        """``idempotency_scope``, else the route: the URL name (``payment-list``; the pattern
        when unnamed), with the method in front unless it is POST (``DELETE payment-detail``)."""
        if self.idempotency_scope is not None:
            return self.idempotency_scope
        return route_endpoint(request) or type(self).__qualname__

    def get_idempotency_scope(self, request: Any) -> str:
        """The endpoint plus the principal: one key, two users or routes, two operations."""
        endpoint = self.get_idempotency_endpoint(request)
        return storable(f"{endpoint}|{self.get_idempotency_principal(request)}")

    def get_idempotency_reference(self, request: Any) -> str | None:
        """``"<name>:<value>"`` from the URL kwarg or the request field; ``None`` without one.

        The value is normalised as the view reads it (``normalise_idempotency_reference``),
        so every spelling of one order is one reference.
        """
        name = self.idempotency_reference_url_kwarg
        if name is not None:
            value = self._url_kwargs(request).get(name)
        else:
            name = self.idempotency_reference_field
            value = None if name is None else self._field_value(request, name)
        if name is None or value is None or value == "":
            return None
        return storable(f"{name}:{self.normalise_idempotency_reference(name, value)}")

    def normalise_idempotency_reference(self, name: str, value: Any) -> Any:
        """The value as the view's form would clean it; without one, any integer spelling
        (``"07"``, ``"+7"``, ``7.0``) is one number."""
        get_form_class = getattr(self, "get_form_class", None)
        field = None if get_form_class is None else get_form_class().base_fields.get(name)
        if field is None:
            return same_integer(value)
        try:
            cleaned = field.clean(value)
        except ValidationError:
            return value  # the form refuses it too, and the refusal releases the key
        return cleaned.pk if isinstance(cleaned, Model) else cleaned

    def get_idempotency_reference_status_codes(self) -> frozenset[int]:
        """Statuses whose answer holds the reference: those that complete the operation."""
        codes = self.idempotency_reference_status_codes
        if codes is None:
            return app_settings.REFERENCE_STATUS_CODES
        return frozenset(int(code) for code in codes)

    def get_idempotency_ttl(self) -> timedelta:
        """How long the response is replayed: ``idempotency_ttl``, else ``IDEMPOTENCY_TTL``
        (under an issued key never less than the key's own life: ``issued_keys.record_ttl``)."""
        own = self.idempotency_ttl
        return app_settings.TTL if own is None else as_timedelta(own)

    def get_idempotency_release_status_codes(self) -> frozenset[int]:
        """Statuses that release the key: "nothing happened, fix and retry" for this view.

        ``idempotency_release_status_codes`` (else ``IDEMPOTENCY_RELEASE_STATUS_CODES``) plus
        ``idempotency_extra_release_status_codes``.
        """
        codes = self.idempotency_release_status_codes
        base = app_settings.RELEASE_STATUS_CODES if codes is None else codes
        extra = self.idempotency_extra_release_status_codes or ()
        return frozenset(int(code) for code in (*base, *extra))

    def get_idempotency_database(self) -> str:
        """The alias the view writes to; the record lives beside the business rows.

        Never calls ``get_queryset()``: in real projects it has side effects (creating a
        session basket, permission checks) or returns ``None`` on action views.
        """
        if self.idempotency_database is not None:
            return self.idempotency_database
        model = (
            self.idempotency_model
            or getattr(self, "model", None)
            or getattr(getattr(self, "queryset", None), "model", None)
            or IdempotencyRecord
        )
        return router.db_for_write(model) or "default"

    def get_idempotency_lock_timeout(self) -> float:
        """``idempotency_lock_timeout``, else ``IDEMPOTENCY_LOCK_TIMEOUT``."""
        own = self.idempotency_lock_timeout
        return app_settings.LOCK_TIMEOUT if own is None else float(own)

    # -- what the doors build on ---------------------------------------------------------

    def raw_idempotency_key(self, request: Any) -> str | None:
        """The key as sent: the header, else (HTML forms) the issued-key form field."""
        header = raw_header_key(request)
        if header is not None or not self.reads_form_keys:
            return header
        value = self._field_value(request, app_settings.ISSUED_KEY_FIELD)
        return None if value is None else str(value)

    def idempotency_key_is_issued(self, request: Any) -> bool:
        """A key from the form field always is; a header key when the view requires it."""
        return raw_header_key(request) is None or self.idempotency_key_source == "issued"

    def principal_option(self) -> str:
        """``idempotency_principal``, its deprecated alias, else ``IDEMPOTENCY_PRINCIPAL``."""
        principal: str | None = self.idempotency_principal
        if principal is None and self.idempotency_guest_sessions is not None:
            principal = "session" if self.idempotency_guest_sessions else "user"
        principal = principal or app_settings.PRINCIPAL
        if principal not in PRINCIPALS:
            # A typo would silently mean "user": guests then get 403s nobody can explain.
            raise ValueError(f"principal must be one of {PRINCIPALS}, not {principal!r}.")
        return principal

    def http_request(self, request: Any) -> HttpRequest:
        """The Django request behind the door's own (DRF's ``Request`` wraps one)."""
        return request  # type: ignore[no-any-return]

    def idempotency_operation(self, request: Any) -> Operation | None:
        """The engine's operation for ``request``; ``None`` when it carries no key."""
        key = self.get_idempotency_key(request)
        if key is None:
            return None
        issued = self.idempotency_key_is_issued(request)
        database = self.get_idempotency_database()
        scope = scope_after_login(
            request,
            self.get_idempotency_scope(request),
            lambda: self.get_idempotency_scope(request),
            key=key,
            database=database,
        )
        reference = self.get_idempotency_reference(request)
        ttl = self.get_idempotency_ttl()
        return Operation(
            database=database,
            scope=scope,
            key=key,
            fingerprint=request_fingerprint(self.http_request(request)),
            method=request.method or "POST",
            path=request.get_full_path(),
            reference=None if reference is None else storable(reference),
            # One issued-key rule: its answer is kept as long as the key may start one.
            ttl=record_ttl(ttl) if issued else ttl,
            lock_timeout=self.get_idempotency_lock_timeout(),
            release_status_codes=self.get_idempotency_release_status_codes(),
            key_expires_at=key_expires_at(key) if issued else None,
            reference_status_codes=self.get_idempotency_reference_status_codes(),
            door=self.idempotency_door,
        )

    def perform_idempotently(self, request: Any, view: View) -> HttpResponseBase:
        """Run ``view`` at most once for the request's key; raises the engine's refusals."""
        http_request = self.http_request(request)
        # Cache the raw body before anything parses the stream (the fingerprint needs it); a
        # multipart form the CSRF middleware already parsed is fingerprinted by its parts.
        with suppress(RawPostDataException):
            read_body(http_request)
        operation = self.idempotency_operation(request)
        if operation is None:
            return view()
        return perform(operation, http_request, view)

    def run_idempotently(self, request: Any, view: View) -> HttpResponseBase:
        """``perform_idempotently``, a refusal rendered by ``idempotency_refusal``."""
        try:
            return self.perform_idempotently(request, view)
        except REFUSALS as exc:
            return self.idempotency_refusal(request, as_refusal(exc))

    def idempotency_refusal(self, request: Any, error: IdempotencyError) -> HttpResponseBase:
        """The door's answer to a refusal; by default it is raised for the framework."""
        raise error

    def _verify_issued_key(self, request: Any, key: str, principal: str) -> None:
        endpoint = self.get_idempotency_endpoint(request)
        try:
            verify_issued_key(key, principal=principal, endpoint=endpoint)
        except InvalidIssuedKey:
            # A key issued to the guest this user was before logging in (the form was sent as
            # a guest, the answer lost): its retry is the guest's, ``scope_after_login`` finds
            # its record. Refusing it would send them to a fresh form, and a second run.
            session = self.principal_option() == "session"
            guest = carried_guest_principal(request) if session else None
            if guest is None:
                raise
            verify_issued_key(key, principal=guest, endpoint=endpoint)

    def _url_kwargs(self, request: Any) -> Mapping[str, Any]:
        own = getattr(self, "kwargs", None)  # a class-based view's
        if isinstance(own, Mapping):
            return own
        match = getattr(request, "resolver_match", None)
        return {} if match is None else match.kwargs

    def _field_value(self, request: Any, name: str) -> Any:
        """A form field, or a top-level JSON member (not the issued key: forms carry it)."""
        if request.content_type in FORM_TYPES:
            return request.POST.get(name)
        if request.content_type == "application/json" and name != app_settings.ISSUED_KEY_FIELD:
            try:
                document = json.loads(read_body(self.http_request(request)))
            except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
                return None  # the view refuses it; nothing to reserve
            return json_member(document, name)
        return None


def json_member(document: Any, name: str) -> Any:
    """The reference member ``name`` of a parsed JSON body; ``None`` for none."""
    value = document.get(name) if isinstance(document, dict) else None
    # A string and a number naming one object are one reference; nested values none.
    return None if isinstance(value, (dict, list, bool)) else value


def perform(operation: Operation, request: HttpRequest, view: View) -> HttpResponseBase:
    """``engine.perform_once``, and what a released answer must not undo: the session."""
    before = session_key(request)
    ran = False

    def run() -> HttpResponseBase:
        nonlocal ran
        ran = True
        return view()

    response = perform_once(operation, run)
    if ran and not should_store(response.status_code, operation.release_status_codes):
        # The release rolled back the view's writes, the client's session among them.
        restore_session(request, before, operation.database)
    return response


def as_refusal(exc: Exception) -> IdempotencyError:
    """The refusal a door renders for ``exc``: the one place a too-large body becomes a 413."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, IdempotencyError):
        return exc
    raise TypeError(f"{exc!r} is no refusal")


def configure(policy: HttpPolicy, options: Mapping[str, Any]) -> HttpPolicy:
    """Set a decorator's ``options`` (the attributes without ``idempotency_``) on ``policy``."""
    for name, value in options.items():
        if name not in OPTIONS and name not in DEPRECATED_OPTIONS:
            raise TypeError(f"Unknown idempotency option {name!r}.")
        if name in DEPRECATED_OPTIONS:
            warn_deprecated(f"the {name!r} option", repr(DEPRECATED_OPTIONS[name]), stacklevel=4)
        setattr(policy, f"idempotency_{name}", value)
    policy.principal_option()  # a typo fails where it is written, not on the first request
    if policy.idempotency_key_source not in KEY_SOURCES:
        raise ValueError(
            f"key_source must be one of {KEY_SOURCES}, not {policy.idempotency_key_source!r}."
        )
    return policy


def warn_deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} is deprecated: use {new}.", DeprecationWarning, stacklevel=stacklevel)


def same_integer(value: Any) -> Any:
    """Any integer spelling (``"07"``, ``"+7"``, `` 7``, ``7.0``) as that integer, as an integer
    lookup reads it; anything else as it is. Merging two values that really differ (two slugs
    ``01`` and ``1``) costs a 409, never a second run."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


async def run_in_one_thread(
    run: Callable[[View], HttpResponseBase], view: Callable[[], Awaitable[HttpResponseBase]]
) -> HttpResponseBase:
    """The async bridge of every door: claim, ``view`` and store in one thread-sensitive block.

    The view's ``await Model.objects.acreate(...)`` then lands on that thread's connection,
    inside the claim's transaction. Cost: the request holds that thread (and its connection)
    while the view awaits, as a sync view would.
    """

    async def run_view() -> HttpResponseBase:
        return await view()

    return await sync_to_async(lambda: run(async_to_sync(run_view)), thread_sensitive=True)()


def raw_header_key(request: Any) -> str | None:
    """The key header's value as sent; ``None`` without one."""
    meta_name = "HTTP_" + app_settings.HEADER.upper().replace("-", "_")
    value = request.META.get(meta_name)
    return None if value is None else str(value)
