"""How DRF answers the layer's refusals: ``IdempotencyRefused``, and an ``EXCEPTION_HANDLER``
that renders every API error as RFC 9457 problem+json."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponseBase
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from ..core.policy import REFUSALS, as_refusal
from ..core.problems import PROBLEM_CONTENT_TYPE, error_response, problem_document, status_title
from ..exceptions import DatabaseUnavailable, IdempotencyError


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


def refused(exc: Exception) -> Exception:
    """``exc`` as DRF should see it: a refusal (a too-large body too) as ``IdempotencyRefused``."""
    if isinstance(exc, REFUSALS):
        return IdempotencyRefused(as_refusal(exc))
    return exc


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponseBase | None:
    """DRF ``EXCEPTION_HANDLER`` that answers every API error as RFC 9457 problem+json."""
    exc = refused(exc)
    if isinstance(exc, IdempotencyRefused):
        # As DRF's own handler does for every error it answers: under ATOMIC_REQUESTS the
        # request's transaction, a refusal's counter and event included, is rolled back.
        set_rollback()
        return error_response(exc.error)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return error_response(DatabaseUnavailable())
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
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
        code=_problem_code(exc),
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
