"""How the plain-Django doors answer a refusal: problem+json for API clients, else an HTML page
that offers only what is safe to do next."""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.template.loader import render_to_string

from ..conf import app_settings
from ..core.policy import FORM_TYPES
from ..core.problems import error_response
from ..exceptions import IdempotencyError


def wants_json(request: HttpRequest) -> bool:
    parts = (request.headers.get("Accept", ""), request.content_type or "")
    return any("json" in part for part in parts)


def refusal_response(request: HttpRequest, error: IdempotencyError) -> HttpResponse:
    """problem+json for API clients, else an HTML page offering only what is safe after this
    refusal (``error.retry``): a button sending this same submission again (same key, same
    fields), or a fresh form only when nothing ran; never an operation performed twice."""
    if wants_json(request):
        return error_response(error)
    context = {
        "title": error.title,
        "detail": error.detail,
        "retry": error.retry,
        "retry_after": error.headers.get("Retry-After"),
        "action": request.get_full_path(),
        "enctype": request.content_type,
        "fields": _resendable_fields(request) if error.retry == "same" else None,
    }
    html = render_to_string("django_idempotency/refusal.html", context, request=request)
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
    if request.method != "POST" or request.content_type not in FORM_TYPES:
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
