"""Run any function at most once per (scope, key): management commands, queue consumers, webhooks.

A thin door over the engine: the function's writes, the claim and its JSON result commit in one
transaction; the result is stored as the engine's stored response and replayed from it. The
rules are the HTTP ones: a copy waits for a running original (then ``RequestInFlight``), the
same key with other arguments is ``KeyMismatch``, an exception rolls back and releases the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

from django.db import router
from django.http import HttpResponse, HttpResponseBase

from .conf import app_settings, as_timedelta
from .engine import Operation, perform_once
from .exceptions import InvalidKey
from .fingerprint import canonical_json
from .keys import parse_key
from .models import IdempotencyRecord
from .responses import REPLAYED_HEADER

P = ParamSpec("P")
R = TypeVar("R")

_MAX_SCOPE_LENGTH = 255
_JSON = "application/json"


@dataclass(frozen=True)
class Outcome:
    """What a run-once call answered: the JSON result, and whether it came from storage."""

    result: Any
    replayed: bool


def call_fingerprint(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """SHA-256 of the callable's name and its arguments in canonical JSON.

    Arguments must be JSON-serialisable: a lossy stand-in (``repr``) could make two different
    calls look alike, and a false match is the one mistake this package never makes.
    """
    _refuse_non_string_keys([args, kwargs])
    document = json.dumps([name, list(args), kwargs], allow_nan=False).encode()
    canonical = canonical_json(document)
    if canonical is None:  # json.dumps wrote it, so it parses, unless nested past the limit
        raise TypeError("The arguments are nested too deeply to fingerprint the call.")
    return hashlib.sha256(canonical).hexdigest()


def _refuse_non_string_keys(value: Any) -> None:
    # json.dumps writes {1: x}, {"1": x} and {True: x} / {"true": x} alike: a false match.
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"Dictionary keys must be strings to fingerprint a call: {name!r}")
            _refuse_non_string_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_non_string_keys(item)


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

    Raises ``InvalidKey`` for a key a header could not carry either, ``KeyMismatch``,
    ``ReferenceConflict``, ``RequestInFlight`` (after waiting ``lock_timeout`` seconds), and
    whatever ``function`` raises, after rolling its writes back.
    """
    parsed = parse_key(key)
    if parsed is None:  # a key function that returned None
        raise InvalidKey("perform() needs a key; got None.")
    if not scope or len(scope) > _MAX_SCOPE_LENGTH:
        raise ValueError(f"A scope must be 1 to {_MAX_SCOPE_LENGTH} characters long.")
    operation = Operation(
        database=database or router.db_for_write(IdempotencyRecord) or "default",
        scope=scope,
        key=parsed,
        fingerprint=fingerprint,
        method=method,
        path=scope,
        reference=reference,
        ttl=app_settings.TTL if ttl is None else as_timedelta(ttl),
        lock_timeout=app_settings.LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
    )
    response = perform_once(operation, partial(_as_response, function))
    if not isinstance(response, HttpResponse):  # both the first run and a replay are one
        raise TypeError(f"Expected the stored result as an HttpResponse, got {response!r}.")
    return Outcome(
        result=json.loads(response.content),
        replayed=response.get(REPLAYED_HEADER) == "true",
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

    The scope defaults to the function's dotted path (a nested function or a lambda must name
    one: its path is not unique), the fingerprint is that name plus the
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


def _as_response(function: Callable[[], Any]) -> HttpResponseBase:
    # Serialised inside the transaction: a result that cannot be stored rolls the run back.
    body = json.dumps(function(), allow_nan=False, separators=(",", ":"))
    return HttpResponse(body.encode(), status=200, content_type=_JSON)
