"""django-ninja door (``pip install django-idempotency[ninja]``).

``@idempotent()`` under ``@api.post(...)`` (or ``idempotent_router(router)``) makes an operation
exactly-once per key, sync or ``async def``. ninja's auth runs first (an unauthenticated request
never reaches the key), then the engine claims the key and runs ninja's own ``run`` (parameter
validation, the operation, rendering) inside the claim's transaction. Refusals go through the
API's exception handlers as problem+json; the OpenAPI entry documents the header (``openapi``).

Cost: a new key authenticates twice (once before the claim, once in ninja's ``run``): ninja has
no public way to authenticate before a view decorator (vitalik/django-ninja#1646), hence its
``Operation._run_authentication``. An ``async def`` operation runs in one thread-sensitive
block with the claim and the store (``core.policy.run_in_one_thread``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial, wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponseBase
from ninja import Router
from ninja.decorators import decorate_view
from ninja.operation import Operation as NinjaOperation

from ..core.policy import UNSAFE_METHODS, HttpPolicy, configure, run_in_one_thread
from .openapi import document
from .policy import NinjaPolicy, problem_handler

__all__ = ["IdempotentRun", "NinjaPolicy", "idempotent", "idempotent_router", "problem_handler"]

Func = TypeVar("Func", bound=Callable[..., Any])
#: Marks a ``run`` that claims keys (``functools.wraps`` copies it onto outer wrappers).
_CLAIMED = "_idempotency_claimed"


def idempotent(**options: Any) -> Callable[[Func], Func]:
    """Decorate one operation; ``options`` as on every door (``core.policy.OPTIONS``).

    Under ``idempotent_router()`` too, the operation still claims once: its own options win,
    the router's fill in the rest."""
    return decorate_view(IdempotentRun(**options))


def idempotent_router(router: Router, **options: Any) -> Router:
    """Every POST/PUT/PATCH/DELETE operation of ``router`` (safe methods pass through)."""
    router.add_decorator(IdempotentRun(**options), mode="view")
    return router


class IdempotentRun:
    """A ninja "view" decorator: wraps ``Operation.run``."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        configure(HttpPolicy(), options)  # unknown options fail here, at import time

    def __call__(self, run: Callable[..., Any]) -> Callable[..., Any]:
        claimed: NinjaPolicy | None = getattr(run, _CLAIMED, None)
        if claimed is not None:
            # Already idempotent (``@idempotent()`` under ``idempotent_router()``): one claim
            # per request, or the second would find the first's row in flight (409). The
            # operation's own options win; the router's fill in the rest.
            for name, value in self.options.items():
                if name not in claimed.own:
                    setattr(claimed, f"idempotency_{name}", value)
            document(claimed.operation, required=claimed.get_idempotency_key_required())
            return run
        operation = _operation_of(run)
        if not UNSAFE_METHODS.intersection(operation.methods):
            return run
        policy = NinjaPolicy(operation, own=frozenset(self.options))
        for name, value in self.options.items():
            setattr(policy, f"idempotency_{name}", value)
        # The OpenAPI entry is built now: it reads IDEMPOTENCY_KEY_REQUIRED when decorating.
        document(operation, required=policy.get_idempotency_key_required())
        wrapped = _wrap(run, operation, policy)
        setattr(wrapped, _CLAIMED, policy)
        return wrapped


def _wrap(
    run: Callable[..., Any], operation: NinjaOperation, policy: NinjaPolicy
) -> Callable[..., Any]:
    if iscoroutinefunction(run):

        @wraps(run)
        async def async_run(request: HttpRequest, **kw: Any) -> HttpResponseBase:
            if operation.auth_callbacks:
                refused = await operation._run_authentication(request)  # type: ignore[misc]
                if refused:
                    return refused  # type: ignore[no-any-return]
            perform = partial(policy.run_idempotently, request)
            return await run_in_one_thread(perform, partial(run, request, **kw))

        return async_run

    @wraps(run)
    def sync_run(request: HttpRequest, **kw: Any) -> HttpResponseBase:
        if operation.auth_callbacks:
            refused = operation._run_authentication(request)
            if refused:
                return refused
        return policy.run_idempotently(request, partial(run, request, **kw))

    return sync_run


def _operation_of(run: Callable[..., Any]) -> NinjaOperation:
    """The operation whose bound ``run`` is (or is wrapped, via ``__wrapped__``, in) ``run``."""
    for candidate in (run, inspect.unwrap(run)):
        operation = getattr(candidate, "__self__", None)
        if isinstance(operation, NinjaOperation):
            return operation
    raise ImproperlyConfigured(
        f"django-idempotency cannot find the ninja operation behind {run!r}: a view decorator "
        "applied before it must keep functools.wraps (``__wrapped__``)."
    )
