"""Run any function at most once per (scope, key): management commands, queue consumers, webhooks.

A thin door over the engine: the function's writes, the claim and its JSON result commit in one
transaction; the result is stored as the engine's stored response and replayed from it. The
rules are the HTTP ones: a copy waits for a running original (then ``RequestInFlight``), the
same key with other arguments is ``KeyMismatch``, an exception rolls back and releases the key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

from django.db import router
from django.http import HttpResponse, HttpResponseBase

from .conf import app_settings, as_timedelta
from .core.engine import perform_once
from .core.fingerprint import canonical_json
from .core.keys import parse_key
from .core.operation import Operation
from .core.references import storable, unsafe
from .core.responses import REPLAYED_HEADER
from .exceptions import InvalidKey
from .models import IdempotencyRecord

P = ParamSpec("P")
R = TypeVar("R")

_MAX_SCOPE_LENGTH = 255
_JSON = "application/json"
# Module names a script runs under: every script's functions share them.
_SCRIPT_MODULES = frozenset({"__main__", "__mp_main__"})
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


@dataclass(frozen=True)
class Outcome:
    """What a run-once call answered: the JSON result, and whether it came from storage."""

    result: Any
    replayed: bool
    #: 200 for a function's result; a door that stores a failure (``IdempotentTask`` giving
    #: up) stores it with another status, and its replay carries that status.
    status: int = 200


def call_fingerprint(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """SHA-256 of the callable's name and its arguments in canonical JSON.

    Arguments must be JSON-serialisable: a lossy stand-in (``repr``) could make two different
    calls look alike, and a false match is the one mistake this package never makes.
    """
    too_deep = "The arguments are nested too deeply to fingerprint the call."
    try:
        refuse_non_string_keys([args, kwargs])
        refuse_surrogate_pairs([args, kwargs])
        document = json.dumps([name, list(args), kwargs], allow_nan=False).encode()
    except RecursionError:
        raise TypeError(too_deep) from None
    canonical = canonical_json(document)
    if canonical is None:  # json.dumps wrote it, so it parses, unless nested past the limit
        raise TypeError(too_deep)
    return hashlib.sha256(canonical).hexdigest()


def refuse_non_string_keys(value: Any) -> None:
    """Raise ``TypeError`` for a dictionary key, at any depth, that is not a string."""
    # json.dumps writes {1: x}, {"1": x} and {True: x} / {"true": x} alike: a false match.
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"Dictionary keys must be strings to fingerprint a call: {name!r}")
            refuse_non_string_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            refuse_non_string_keys(item)


def refuse_surrogate_pairs(value: Any) -> None:
    """Raise ``ValueError`` for text, at any depth, with a high surrogate before a low one."""
    # JSON's escapes write the two code points U+D83D U+DE00 as they write the one character
    # U+1F600, and read both back as the character: two different calls, one fingerprint.
    if isinstance(value, str):
        if _SURROGATE_PAIR.search(value):
            raise ValueError(
                "Text with a surrogate pair cannot be told from the character it encodes: "
                f"{value!r}"
            )
    elif isinstance(value, dict):
        for name, item in value.items():
            refuse_surrogate_pairs(name)
            refuse_surrogate_pairs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            refuse_surrogate_pairs(item)


def operation(
    *,
    scope: str,
    key: str,
    fingerprint: str,
    reference: str | None = None,
    database: str | None = None,
    ttl: timedelta | int | float | None = None,
    lock_timeout: float | None = None,
    method: str = "CALL",
) -> Operation:
    """The engine's ``Operation`` for a call, its parts checked as the HTTP doors check theirs.

    Raises ``InvalidKey`` for a key a header could not carry either, or that a header would
    carry quoted (``"k"`` names the key ``k`` there, not here), ``ValueError`` for a scope
    no column takes, ``TypeError`` for a key or reference that is not a string. A reference
    goes through ``references.storable`` like every door's: one longer than 255 characters or
    with characters no database stores (NUL, lone surrogates) is held as its SHA-256, never cut.
    """
    if key is None:  # a key function that returned None
        raise InvalidKey("The idempotency key is missing.")
    if not isinstance(key, str):
        raise TypeError(f"An idempotency key must be a string, not {type(key).__name__}.")
    parsed = parse_key(key)
    if parsed is None:  # parse_key answers None only for an absent key
        raise InvalidKey("The idempotency key is missing.")
    if parsed != key:
        # A header's "k" denotes the key k (an sf-string); a call's key is its text, and
        # reading it as a header's would make the task ids "k" and k one key.
        raise InvalidKey("A key of a call or task is taken as it is: quotes are not allowed.")
    if not scope or len(scope) > _MAX_SCOPE_LENGTH or unsafe(scope) is not None:
        raise ValueError(
            f"A scope must be 1 to {_MAX_SCOPE_LENGTH} characters long, without NUL or lone "
            f"surrogates: {scope[:80]!r}"
        )
    if reference is not None and not isinstance(reference, str):
        raise TypeError(f"A reference must be a string or None, not {type(reference).__name__}.")
    return Operation(
        database=database or router.db_for_write(IdempotencyRecord) or "default",
        scope=scope,
        key=parsed,
        fingerprint=fingerprint,
        method=method,
        path=scope,
        reference=None if not reference else storable(reference),
        ttl=app_settings.TTL if ttl is None else as_timedelta(ttl),
        lock_timeout=app_settings.LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
    )


def perform(
    function: Callable[[], Any],
    *,
    scope: str,
    key: str,
    fingerprint: str,
    reference: str | None = None,
    database: str | None = None,
    ttl: timedelta | int | float | None = None,
    lock_timeout: float | None = None,
    method: str = "CALL",
) -> Outcome:
    """Run ``function`` once for (scope, key), or answer with the result the first run stored.

    Raises what ``operation()`` raises for a key, scope or reference that cannot be stored,
    ``KeyMismatch``, ``ReferenceConflict``, ``RequestInFlight`` (after waiting
    ``lock_timeout`` seconds), and whatever ``function`` raises, after rolling its writes back.
    """
    prepared = operation(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        reference=reference,
        database=database,
        ttl=ttl,
        lock_timeout=lock_timeout,
        method=method,
    )
    return answer(prepared, json_view(function))


def answer(operation: Operation, view: Callable[[], HttpResponseBase]) -> Outcome:
    """Run ``view`` (answering JSON) once for ``operation``; its answer, or the stored one."""
    response = perform_once(operation, view)
    if not isinstance(response, HttpResponse):
        raise TypeError(f"A run-once view must answer an HttpResponse, not {response!r}.")
    return Outcome(
        result=json.loads(response.content),
        replayed=response.get(REPLAYED_HEADER) == "true",
        status=response.status_code,
    )


def run_once(
    function: Callable[[], Any],
    *,
    scope: str,
    key: str,
    fingerprint: str | None = None,
    **options: Any,
) -> Any:
    """``perform()`` returning only the result; the fingerprint defaults to the scope alone."""
    if fingerprint is None:
        fingerprint = call_fingerprint(scope, (), {})
    return perform(function, scope=scope, key=key, fingerprint=fingerprint, **options).result


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


def json_view(function: Callable[[], Any]) -> Callable[[], HttpResponseBase]:
    """A view for ``answer()`` that answers ``function()``'s result as stored JSON."""
    return partial(_as_response, function)


def _as_response(function: Callable[[], Any]) -> HttpResponseBase:
    # Serialised inside the transaction: a result that cannot be stored rolls the run back.
    body = json.dumps(function(), allow_nan=False, separators=(",", ":"))
    return HttpResponse(body.encode(), status=200, content_type=_JSON)
