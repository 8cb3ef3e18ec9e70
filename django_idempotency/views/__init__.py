"""Plain Django doors, sync or async: ``@idempotent_view`` for function views,
``IdempotentViewMixin`` for class-based ones; ``core.policy.HttpPolicy`` whose refusals are
problem+json for JSON clients and an HTML page for browsers (``refusal_response``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase

from ..core.operation import current_operation
from ..core.policy import (
    UNSAFE_METHODS,
    HttpPolicy,
    KeySource,  # noqa: F401  (re-exported: the option types)
    PrincipalSource,  # noqa: F401
    configure,
    run_in_one_thread,
)
from ..exceptions import IdempotencyError
from .refusals import refusal_response, wants_json  # noqa: F401  (part of the door's API)

ViewFunc = Callable[..., Any]


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
        _refuse_idempotent(func)
        if iscoroutinefunction(func):

            @wraps(func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                view = partial(func, request, *args, **kwargs)
                if request.method not in UNSAFE_METHODS:
                    return await view()
                return await run_in_one_thread(partial(policy.run_idempotently, request), view)

            return _mark_idempotent(markcoroutinefunction(async_wrapper))

        @wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            view = partial(func, request, *args, **kwargs)
            if request.method not in UNSAFE_METHODS:
                return view()
            return policy.run_idempotently(request, view)

        return _mark_idempotent(wrapper)

    return decorate(view) if view is not None else decorate


def make_policy(options: dict[str, Any]) -> ViewPolicy:
    return cast(ViewPolicy, configure(ViewPolicy(), options))


#: Set on a view ``idempotent_view`` made; ``functools.wraps`` carries it through decorators.
_IDEMPOTENT_VIEW = "_idempotency_view"


def _mark_idempotent(wrapper: ViewFunc) -> ViewFunc:
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
