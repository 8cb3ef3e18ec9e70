"""A client for idempotent APIs (this package's, Stripe's): one key per logical request,
reused by every retry of it, and retries only where another attempt is safe and may help.

Framework-free: importing it imports neither Django nor an HTTP library. The adapters are
``django_idempotency.client.requests.IdempotentSession`` and
``django_idempotency.client.httpx.IdempotentClient`` / ``AsyncIdempotentClient``.
"""

from __future__ import annotations

from .attempts import Attempt, GaveUp, Result
from .keys import new_key
from .policy import RetryPolicy, problem_code, retry_after

__all__ = [
    "Attempt",
    "GaveUp",
    "Result",
    "RetryPolicy",
    "new_key",
    "problem_code",
    "retry_after",
]
