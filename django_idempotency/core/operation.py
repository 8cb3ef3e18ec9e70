"""One idempotent operation, as every door hands it to the engine, and the one running now.

A value object of its own, imported by the engine, the store, the event log and the doors, so
that none of them imports another to know what an operation is.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Operation:
    """One idempotent request, as the engine sees it."""

    database: str
    scope: str
    key: str
    fingerprint: str
    method: str
    path: str
    reference: str | None
    ttl: timedelta
    lock_timeout: float
    #: Statuses released instead of stored (besides every 5xx); ``None``: the setting.
    release_status_codes: frozenset[int] | None = None
    #: An issued key's expiry: a claim that would start a new operation after it, by the
    #: clock that dates the records, is refused (``IssuedKeyExpired``); a retry whose record
    #: exists replays whatever the key's age. ``None``: the key does not expire.
    key_expires_at: datetime | None = None
    #: Statuses whose stored answer holds the reference; ``None``: the setting (every 2xx).
    reference_status_codes: frozenset[int] | None = None
    #: The door that built it, for metrics and traces: ``drf``, ``django``, ``ninja``,
    #: ``celery`` or ``once``.
    door: str = "once"


# The operation whose callable is running, so any door's code can derive downstream keys.
_current: ContextVar[Operation | None] = ContextVar("idempotency_operation", default=None)


def current_operation() -> Operation | None:
    """The operation ``perform_once`` is running right now in this context, if any."""
    return _current.get()
