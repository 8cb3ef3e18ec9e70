"""Plain Django doors, sync or async: ``@idempotent_view`` for function views,
``IdempotentViewMixin`` for class-based ones; ``core.policy.HttpPolicy`` whose refusals are
problem+json for JSON clients and an HTML page for browsers (``refusal_response``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import partial, wraps
from typing import Any, cast
from urllib.parse import parse_qsl

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.template.loader import render_to_string

from .conf import app_settings
from .core.operation import current_operation
from .core.policy import (
    FORM_TYPES,
    UNSAFE_METHODS,
    HttpPolicy,
    KeySource,  # noqa: F401  (re-exported: the option types)
    PrincipalSource,  # noqa: F401
    configure,
    run_in_one_thread,
)
from .core.problems import error_response
from .exceptions import IdempotencyError

ViewFunc = Callable[..., Any]


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


class ViewPolicy(HttpPolicy):
    """The plain-Django doors' policy: refusals rendered by ``refusal_response``."""

    def idempotency_refusal(self, request: Any, error: IdempotencyError) -> HttpResponseBase:
        return refusal_response(request, error)


class IdempotentViewMixin(ViewPolicy):
    """Put first in the bases of a ``View``/``FormView``/``CreateView`` (after
    ``LoginRequiredMixin``, so an anonymous visitor is sent to log in before any key check)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        parent = partial(super().dispatch, request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in UNSAFE_METHODS:
            return parent()
        if getattr(type(self), "view_is_async", False):
            return run_in_one_thread(partial(self.run_idempotently, request), parent)
        return self.run_idempotently(request, parent)

    def form_invalid(self, form: Any) -> HttpResponseBase:
        # "Fix and retry": a 400 releases the key (instead of storing the error page) so the
        # corrected form can be sent again; without a key the view answers as without us.
        response: HttpResponseBase = super().form_invalid(form)  # type: ignore[misc]
        if response.status_code == 200 and current_operation() is not None:
            response.status_code = 400
        return response


def idempotent_view(view: ViewFunc | None = None, **options: Any) -> Any:
    """Make a function view exactly-once per key for unsafe methods; ``options`` are the
    ``idempotency_*`` attributes without their prefix (``@idempotent_view(ttl=60)``)."""

    def decorate(func: ViewFunc) -> ViewFunc:
        policy = make_policy(options)
        if iscoroutinefunction(func):

            @wraps(func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                view = partial(func, request, *args, **kwargs)
                if request.method not in UNSAFE_METHODS:
                    return await view()
                return await run_in_one_thread(partial(policy.run_idempotently, request), view)

            return cast(ViewFunc, markcoroutinefunction(async_wrapper))

        @wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            view = partial(func, request, *args, **kwargs)
            if request.method not in UNSAFE_METHODS:
                return view()
            return policy.run_idempotently(request, view)

        return wrapper

    return decorate(view) if view is not None else decorate


def make_policy(options: dict[str, Any]) -> ViewPolicy:
    return cast(ViewPolicy, configure(ViewPolicy(), options))
