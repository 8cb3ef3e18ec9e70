"""``@once``: a function that runs once per key its arguments give, a thin wrapper over
``perform``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

from .calls import call_fingerprint
from .runs import perform

P = ParamSpec("P")
R = TypeVar("R")

# Module names a script runs under: every script's functions share them.
_SCRIPT_MODULES = frozenset({"__main__", "__mp_main__"})


def once(
    *,
    key: Callable[..., str],
    scope: str | None = None,
    reference: Callable[..., str | None] | None = None,
    **options: Any,
) -> Callable[[Callable[P, R]], Callable[P, Any]]:
    """Decorator: the function runs once per key that ``key(*args, **kwargs)`` returns.

    The scope defaults to the function's dotted path (a nested function, a lambda or a function
    of a script run as ``__main__`` must name one: its path is not unique), the fingerprint is
    that name plus the
    arguments. The decorated function returns the JSON form of the result, first run and
    replay alike (a tuple comes back as a list, a Decimal must be converted by the function).
    """

    def decorate(function: Callable[P, R]) -> Callable[P, Any]:
        name = scope or f"{function.__module__}.{function.__qualname__}"
        if scope is None and "<" in function.__qualname__:
            # Every function a factory makes (and every lambda) shares "<locals>" / "<lambda>"
            # names: one scope for different operations would replay one's result to another.
            raise ValueError(
                f"once() needs a scope for {function.__qualname__}: its name is not unique."
            )
        if scope is None and function.__module__ in _SCRIPT_MODULES:
            # Every script run as a program is "__main__": two scripts' "process" functions
            # would share one scope, and the second would replay the first one's result.
            raise ValueError(
                f"once() needs a scope for {function.__qualname__} in {function.__module__}: "
                "every script run as a program shares that module name."
            )

        @wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return perform(
                partial(function, *args, **kwargs),
                scope=name,
                key=key(*args, **kwargs),
                fingerprint=call_fingerprint(name, args, kwargs),
                reference=None if reference is None else reference(*args, **kwargs),
                **options,
            ).result

        return wrapper

    return decorate
