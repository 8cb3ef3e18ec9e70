"""Stable keys for downstream calls (a charge, a booking) made inside an idempotent operation.

A retry of the operation derives the same key, so a callee that deduplicates by key (Stripe,
most carriers) performs the call once even when our own transaction died after it.
"""

from __future__ import annotations

import json

from django.utils.crypto import salted_hmac

from ..conf import app_settings
from .operation import Operation, current_operation

#: Marks a key as derived; the rest is 64 hex digits, so the whole is printable ASCII.
PREFIX = "idk_"
_SALT = "django_idempotency.derived_keys"  # never change: it would change every derived key


class NoCurrentOperation(LookupError):
    """``derive_key()`` was called outside an idempotent operation."""


def hmac_key(scope: str, key: str, label: str, fingerprint: str) -> str:
    """HMAC of (scope, key, label, fingerprint): the client's key cannot be read back from it.

    The parts are JSON-encoded together, so no choice of separators in one part can make two
    different tuples collide. The fingerprint is part of it because a released key (the first
    run died after the downstream call) may come back with another payload: the callee, which
    deduplicates by key alone, would answer it with the first payload's charge.
    """
    message = json.dumps([scope, key, label, fingerprint], ensure_ascii=True)
    digest = salted_hmac(_SALT, message, secret=app_settings.DERIVED_KEY_SECRET, algorithm="sha256")
    return PREFIX + digest.hexdigest()


def derive_key(label: str) -> str:
    """The key for the downstream call ``label`` of the operation running now.

    Works in any door built on the engine (DRF views, plain views, ninja, tasks, ``once``):
    the engine keeps the running operation in a context variable.
    """
    operation = current_operation()
    if operation is None:
        raise NoCurrentOperation(
            "derive_key() needs a running idempotent operation (a request with an "
            "Idempotency-Key, a task or a function run once)."
        )
    return key_for(operation, label)


def key_for(operation: Operation, label: str) -> str:
    """The key for the downstream call ``label`` of ``operation`` (a retry derives the same)."""
    return hmac_key(operation.scope, operation.key, label, operation.fingerprint)
