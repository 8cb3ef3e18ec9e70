"""When a client retries an idempotent request, and how long it waits first (no I/O here)."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Literal

#: Problem ``type`` codes of this package's refusals (``exceptions.py``, ``default_code``).
IN_FLIGHT = "idempotency-request-in-flight"
REFERENCE_CONFLICT = "idempotency-reference-conflict"
KEY_MISMATCH = "idempotency-key-mismatch"

#: ``"retry"``: send the same request again, same key; ``"done"``: a final answer;
#: ``"refused"``: a 4xx about the request itself, never worth another attempt.
Verdict = Literal["retry", "done", "refused"]

# Besides every 5xx: the server says nothing ran, or not yet, and may well run it next time.
_TRANSIENT = frozenset({408, 425, 429})


def problem_code(headers: Mapping[str, str], body: bytes) -> str | None:
    """The code of a problem+json answer: the last part of its ``type`` URI (after ``#``,
    ``/`` or ``:``), the refusal's ``default_code`` whatever ``IDEMPOTENCY_PROBLEM_TYPE_BASE``
    is. ``None`` for any other body."""
    content_type = headers.get("content-type", "") or headers.get("Content-Type", "")
    if "json" not in content_type:
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    kind = document.get("type") if isinstance(document, dict) else None
    if not isinstance(kind, str) or not kind:
        return None
    return re.split(r"[#/:]", kind)[-1] or None


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delay-seconds or an HTTP-date (RFC 9110
    10.2.3); ``None`` when absent or unreadable, 0 for a date already past."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110: HTTP-dates are UTC
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently one logical request is retried.

    Every attempt carries the same ``Idempotency-Key``, so a retry can never perform the
    operation twice: the server replays the first answer or runs it if nothing was stored.
    """

    #: Attempts in all, the first included.
    max_attempts: int = 5
    #: No retry starts whose wait would end later than this many seconds after the first
    #: attempt began (the attempts' own time counts too).
    max_elapsed: float = 30.0
    #: Backoff without ``Retry-After``: ``base_delay * 2**(retry - 1)``, at most ``max_delay``,
    #: then a random part of it taken away (jitter), so clients that failed together spread out.
    base_delay: float = 0.25
    max_delay: float = 8.0
    #: Statuses retried besides every 5xx and a ``409`` in flight.
    transient_statuses: frozenset[int] = _TRANSIENT
    #: A ``Retry-After`` longer than this is not waited for: the answer is returned as it is.
    max_retry_after: float = 60.0
    #: A random fraction in [0, 1): where the jitter comes from (fixed in tests).
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def verdict(self, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        """What an answer means for the logical request."""
        if status < 400:
            return "done"
        if status >= 500 or status in self.transient_statuses:
            return "retry"
        if status == 409:
            return "retry" if self.in_flight(headers, body) else "refused"
        return "refused"

    def in_flight(self, headers: Mapping[str, str], body: bytes) -> bool:
        """A 409 that means "the first request with this key is still running": this
        package's problem type, or (another server's) a bare 409 with ``Retry-After``. A
        reference conflict or a mismatch is never one: nothing will change by waiting."""
        code = problem_code(headers, body)
        if code is not None:
            return code == IN_FLIGHT
        return retry_after(headers) is not None

    def backoff(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1 for the second attempt): "equal jitter",
        between half and all of the exponential step."""
        step = min(self.max_delay, self.base_delay * float(2 ** max(0, retry - 1)))
        return step / 2 + step / 2 * self.rng()

    def delay(self, retry: int, headers: Mapping[str, str] | None) -> float | None:
        """Seconds to wait before retry number ``retry``: what ``Retry-After`` asks (the server
        knows when the first request will be done), else the backoff; ``None`` when the server
        asks for longer than ``max_retry_after``."""
        asked = retry_after(headers) if headers is not None else None
        if asked is None:
            return self.backoff(retry)
        if asked > self.max_retry_after:
            return None
        # A little jitter on top, never less than asked: many clients told "1" spread out.
        return asked + self.base_delay * self.rng()
