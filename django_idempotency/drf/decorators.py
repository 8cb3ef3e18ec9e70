"""``@idempotent``: any DRF handler exactly-once per key, over ``core.policy``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponseBase
from rest_framework.request import Request

from ..core.policy import OPTIONS, REFUSALS, perform
from .handlers import refused
from .rendering import avoid_html, finalized, rendered

# Marks a decorated handler (and, through the bound method, the view's handler for a request).
_MARK = "idempotency_options"
# Set on the request while a decorated handler runs, so a nested one does not claim again.
_ACTIVE = "_idempotency_active"
# What the handlers of DRF's generic views (``CreateAPIView.post`` ...) delegate to.
_GENERIC_ACTIONS = {
    "post": "create",
    "put": "update",
    "patch": "partial_update",
    "delete": "destroy",
}

Handler = Callable[..., HttpResponseBase]


def idempotent(**options: Any) -> Callable[[Handler], Handler]:
    """Make a DRF handler exactly-once per ``Idempotency-Key``.

    For any unsafe handler: an ``@action(methods=["post"])``, ``update``, ``partial_update``,
    ``destroy``, or an ``APIView``'s ``post``/``put``/``patch``/``delete``, on a view with
    ``IdempotentAPIViewMixin`` (or ``IdempotentCreateMixin``) in its bases. The view's
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
            except REFUSALS as exc:
                raise refused(exc) from exc

        setattr(wrapper, _MARK, dict(options))
        return wrapper

    return decorate


def idempotent_options(handler: Any) -> dict[str, Any] | None:
    """The options of a handler decorated with ``@idempotent``; ``None`` when it is not."""
    options = getattr(handler, _MARK, None)
    return dict(options) if isinstance(options, dict) else None


def handler_options(view: Any, handler: Any) -> dict[str, Any] | None:
    """The ``@idempotent`` options that apply when ``handler`` answers for ``view``.

    DRF's generic views' handlers (``CreateAPIView.post`` ...) only delegate to the action
    (``create``), so that action is judged instead; so is a view's own handler in front of
    one of them (a ``post()`` calling ``super().post()``), which then runs under the action's
    options as a whole (``IdempotentAPIViewMixin.initial``).
    """
    options = idempotent_options(handler)
    if options is not None:
        return options
    name = getattr(getattr(handler, "__func__", handler), "__name__", "")
    if name not in _GENERIC_ACTIONS or not generic_handler(view, name):
        return None
    return idempotent_options(getattr(view, _GENERIC_ACTIONS[name], None))


def generic_handler(view: Any, method: str) -> bool:
    """``method`` of ``view`` is a DRF generic view's, or the view's own in front of one."""
    return any(
        base.__module__ == "rest_framework.generics" and method in vars(base)
        for base in type(view).__mro__
    )


def _perform(
    view: Any, handler: Handler, options: dict[str, Any], request: Request, *args: Any, **kw: Any
) -> HttpResponseBase:
    configure = getattr(view, "configure_idempotency", None)
    if configure is None:
        raise ImproperlyConfigured(
            f"{type(view).__qualname__} uses @idempotent: add IdempotentAPIViewMixin to its "
            "bases (before the DRF view class) for the hooks and the early read of the body."
        )
    configure(options)  # this request's view instance: DRF builds one per request
    operation = view.idempotency_operation(request)
    if operation is None:
        return handler(view, request, *args, **kw)
    avoid_html(view, request)
    finalize = view.finalize_response
    setattr(request, _ACTIVE, True)
    try:
        run = functools.partial(rendered, view, handler, request, *args, **kw)
        response = perform(operation, request._request, run)
    finally:
        setattr(request, _ACTIVE, False)
    # The answer is final, a replay's stored bytes included: dispatch's finalize_response
    # must not run the view's own on it again.
    view.finalize_response = finalized(finalize, response)
    return response
