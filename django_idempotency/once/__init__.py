"""Run any function at most once per (scope, key): management commands, queue consumers, webhooks.

A thin door over the engine: the function's writes, the claim and its JSON result commit in one
transaction; the result is stored as the engine's stored response and replayed from it. The
rules are the HTTP ones: a copy waits for a running original (then ``RequestInFlight``), the
same key with other arguments is ``KeyMismatch``, an exception rolls back and releases the key.

``decorators`` holds ``@once``, ``runs`` the calls (``perform``, ``run_once``, ``answer``),
``operations`` the checks that turn a call's key, scope and reference into an ``Operation``,
``calls`` the fingerprint of a call's arguments.
"""

from .calls import call_fingerprint, refuse_non_string_keys, refuse_surrogate_pairs
from .decorators import once
from .operations import operation
from .runs import Outcome, answer, json_view, perform, run_once

__all__ = [
    "Outcome",
    "answer",
    "call_fingerprint",
    "json_view",
    "once",
    "operation",
    "perform",
    "refuse_non_string_keys",
    "refuse_surrogate_pairs",
    "run_once",
]
