"""Django REST framework integration: the viewset mixin and a problem+json exception handler."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError, connections, router, transaction
from django.db.models import Model
from django.http import Http404, HttpResponseBase
from rest_framework import exceptions as drf_exceptions
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS
from rest_framework.relations import RelatedField
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .conf import app_settings, as_timedelta
from .engine import Operation, perform_once
from .exceptions import (
    AuthenticationRequired,
    DatabaseUnavailable,
    IdempotencyError,
    MissingKey,
    PayloadTooLarge,
)
from .fingerprint import read_body, request_fingerprint
from .issued_keys import verify_issued_key
from .keys import parse_key
from .models import IdempotencyRecord
from .problems import PROBLEM_CONTENT_TYPE, error_response, problem_document, status_title

_MAX_SCOPE_LENGTH = 255


class IdempotentCreateMixin:
    """Make ``create()`` (POST) of a DRF view exactly-once per ``Idempotency-Key``.

    Opt in per view with the ``idempotency_*`` attributes, or override the ``get_idempotency_*``
    hooks for anything computed from the request.
    """

    #: Refuse a POST without a key (400). ``False``: a request without a key runs as usual.
    idempotency_key_required: bool = True
    #: Name of the endpoint part of the scope; default: the URL name (e.g. ``order-list``).
    idempotency_scope: str | None = None
    #: Request field holding a business reference (e.g. ``"order"``) that only one key may use.
    idempotency_reference_field: str | None = None
    #: How long the response is replayed; default ``IDEMPOTENCY_TTL``.
    idempotency_ttl: timedelta | int | float | None = None

    request: Request

    # -- DRF hooks -----------------------------------------------------------------------

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Read the raw body before authentication runs: the CSRF check of session auth parses
        # the stream, after which the bytes the fingerprint needs are gone.
        if request.method not in SAFE_METHODS and self._key_header(request) is not None:
            read_body(request._request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = self.get_idempotency_key(request)
        if key is None:
            return super().create(request, *args, **kwargs)  # type: ignore[misc,no-any-return]
        database = self.get_idempotency_database()
        operation = Operation(
            database=database,
            scope=self.get_idempotency_scope(request),
            key=key,
            fingerprint=request_fingerprint(request._request),
            method=request.method or "POST",
            path=request.get_full_path(),
            reference=_bounded(self.get_idempotency_reference(request)),
            ttl=self.get_idempotency_ttl(),
            lock_timeout=app_settings.LOCK_TIMEOUT,
        )
        return perform_once(
            operation, lambda: self._create_rendered(database, request, *args, **kwargs)
        )

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, RequestDataTooBig):
            exc = PayloadTooLarge(str(exc))
        if isinstance(exc, IdempotencyError):
            return error_response(exc)
        return super().handle_exception(exc)  # type: ignore[misc,no-any-return]

    # -- overridable hooks ---------------------------------------------------------------

    def get_idempotency_key(self, request: Request) -> str | None:
        key = parse_key(self._key_header(request))
        if key is None and self.idempotency_key_required:
            raise MissingKey(f"This endpoint requires an {app_settings.HEADER} header.")
        # ``idempotency_key_source = "issued"``: only keys from the issuing endpoint (400).
        if key is not None and getattr(self, "idempotency_key_source", "any") == "issued":
            verify_issued_key(
                key,
                principal=self.get_idempotency_principal(request),
                endpoint=str(
                    self.idempotency_scope or getattr(request.resolver_match, "view_name", "")
                ),
            )
        return key

    def get_idempotency_principal(self, request: Request) -> str:
        """Whose keys these are. Anonymous clients are refused unless this is overridden."""
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            raise AuthenticationRequired()
        return f"{user._meta.label_lower}:{user.pk}"

    def get_idempotency_scope(self, request: Request) -> str:
        """The principal plus the endpoint: one key, two users or endpoints, two operations."""
        endpoint = self.idempotency_scope
        if endpoint is None:
            match = request.resolver_match
            endpoint = match.view_name if match else type(self).__qualname__
        return _bounded(f"{endpoint}|{self.get_idempotency_principal(request)}") or ""

    def get_idempotency_reference(self, request: Request) -> str | None:
        """``"<field>:<value>"``, the value in the form the serializer would save it.

        ``1``, ``1.0``, ``"01"`` and ``" 1"`` all name order 1 to the serializer, so they must
        name one reference too; a value the serializer refuses is kept as sent (the request
        fails validation and releases its key anyway).
        """
        name = self.idempotency_reference_field
        if name is None or not isinstance(request.data, Mapping):
            return None
        value = request.data.get(name)
        if value is None or value == "":
            return None
        return f"{name}:{self._normalised_reference(name, value)}"

    def get_idempotency_ttl(self) -> timedelta:
        if self.idempotency_ttl is None:
            return app_settings.TTL
        return as_timedelta(self.idempotency_ttl)

    def get_idempotency_database(self) -> str:
        """The alias the view writes to; the record lives beside the business rows."""
        return router.db_for_write(self._business_model()) or "default"

    # -- internals -----------------------------------------------------------------------

    def _normalised_reference(self, name: str, value: Any) -> Any:
        field = self._serializer_field(name)
        queryset: Any = getattr(field, "queryset", None)
        try:
            if isinstance(field, RelatedField) and queryset is not None:
                # The primary key's own conversion: no query to load the related row.
                pk_field = getattr(field, "pk_field", None)
                if pk_field is not None:
                    value = pk_field.to_internal_value(value)
                if isinstance(value, bool):
                    return value  # DRF refuses booleans as keys; so does validation later
                return queryset.model._meta.pk.to_python(value)
            if field is not None:
                return field.to_internal_value(value)
        except (DjangoValidationError, drf_exceptions.ValidationError, TypeError, ValueError):
            pass
        return value

    def _business_model(self) -> type[Model]:
        get_queryset = getattr(self, "get_queryset", None)
        if get_queryset is None:
            return IdempotencyRecord
        queryset = getattr(self, "queryset", None)
        if (
            queryset is not None
            and getattr(type(self), "get_queryset", None) is GenericAPIView.get_queryset
        ):
            # DRF's own get_queryset() returns this attribute's model: skip building a queryset.
            return queryset.model  # type: ignore[no-any-return]
        return get_queryset().model  # type: ignore[no-any-return]

    def _serializer_field(self, name: str) -> Any:
        get_serializer = getattr(self, "get_serializer", None)
        if get_serializer is None:
            return None
        try:
            return get_serializer().fields.get(name)
        except AssertionError:  # DRF's way of saying the view has no serializer_class
            return None

    def _key_header(self, request: Request) -> str | None:
        meta_name = "HTTP_" + app_settings.HEADER.upper().replace("-", "_")
        value = request.META.get(meta_name)
        return None if value is None else str(value)

    def _create_rendered(
        self, database: str, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """Run the real ``create()`` and render it, so its bytes can be stored.

        An exception DRF answers is treated as DRF treats it: under ``ATOMIC_REQUESTS`` the
        view's writes are rolled back (a savepoint inside the claim's transaction), otherwise
        they stay. Whether the answer is stored or released is the engine's decision.
        """
        atomic_requests = bool(connections[database].settings_dict.get("ATOMIC_REQUESTS"))
        try:
            with transaction.atomic(using=database) if atomic_requests else nullcontext():
                response = super().create(request, *args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            response = self.handle_exception(exc)  # re-raises what DRF does not answer
            if atomic_requests:
                # DRF marked the claim's transaction for rollback; the savepoint already undid
                # the view's writes, and the engine decides the rest.
                transaction.set_rollback(False, using=database)
        response = self.finalize_response(request, response, *args, **kwargs)  # type: ignore[attr-defined]
        if isinstance(response, Response):
            response.render()
        return response  # type: ignore[no-any-return]


def _bounded(value: str | None) -> str | None:
    """Values longer than a column stay unique as a digest."""
    if value is None or len(value) <= _MAX_SCOPE_LENGTH:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    """DRF ``EXCEPTION_HANDLER`` that answers every API error as RFC 9457 problem+json."""
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(str(exc))
    if isinstance(exc, IdempotencyError):
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


def _problem_code(exc: Exception) -> str:
    if isinstance(exc, Http404):
        return "not-found"
    if isinstance(exc, DjangoPermissionDenied):
        return "permission-denied"
    code = getattr(exc, "default_code", "error")
    return str(code).replace("_", "-")
