"""Running a function once for an ``Operation``: its result stored as JSON, and answered from
storage on every later call (``perform``, ``run_once``; ``answer`` for doors that build their own
``Operation``, such as ``IdempotentTask``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.http import HttpResponse, HttpResponseBase

from ..core.engine import perform_once
from ..core.operation import Operation
from ..core.responses import REPLAYED_HEADER
from .calls import call_fingerprint
from .operations import operation

_JSON = "application/json"


@dataclass(frozen=True)
class Outcome:
    """What a run-once call answered: the JSON result, and whether it came from storage."""

    result: Any
    replayed: bool
    #: 200 for a function's result; a door that stores a failure (``IdempotentTask`` giving
    #: up) stores it with another status, and its replay carries that status.
    status: int = 200


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


def json_view(function: Callable[[], Any]) -> Callable[[], HttpResponseBase]:
    """A view for ``answer()`` that answers ``function()``'s result as stored JSON."""
    return partial(_as_response, function)


def _as_response(function: Callable[[], Any]) -> HttpResponseBase:
    # Serialised inside the transaction: a result that cannot be stored rolls the run back.
    body = json.dumps(function(), allow_nan=False, separators=(",", ":"))
    return HttpResponse(body.encode(), status=200, content_type=_JSON)
