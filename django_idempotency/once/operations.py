"""The engine's ``Operation`` for a call or a task, its key, scope and reference checked as the
HTTP doors check theirs."""

from __future__ import annotations

from datetime import timedelta

from django.db import router

from ..conf import app_settings, as_timedelta
from ..core.keys import parse_key
from ..core.operation import Operation
from ..core.references import storable, unsafe
from ..exceptions import InvalidKey
from ..models import IdempotencyRecord

_MAX_SCOPE_LENGTH = 255


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
    door: str = "once",
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
        door=door,
    )
