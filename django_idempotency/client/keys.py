"""The key of one logical request: given, derived from the running operation, or new.

Nothing here imports Django: a service without it gets random keys. Inside an idempotent
operation of this package (a view, a task, ``once``), the key of a downstream call is derived
from the operation (``core.derived_keys``), so a retry of the whole operation, after a crash
between the downstream call and our commit, sends the same key and the callee answers with
its first result instead of performing it again.
"""

from __future__ import annotations

import secrets
import sys
import threading
import weakref
from collections import Counter
from typing import Any

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# Calls per (operation, label) made so far, by operation identity: the second call to one
# URL in one operation gets a label (and a key) of its own, the same on every run of it.
_calls: dict[int, Counter[str]] = {}
_calls_lock = threading.Lock()


def new_key() -> str:
    """A random key (128 bits, URL-safe), for a logical request outside any operation."""
    return secrets.token_urlsafe(16)


def choose_key(method: str, url: str, *, key: str | None, label: str | None) -> str | None:
    """The key the attempts of this request carry; ``None`` for a safe method (nothing to
    deduplicate) unless one is given.

    ``key`` wins. Inside a running operation, the derived key of ``label``, by default
    ``"<METHOD> <url>"`` and, for its n-th call in the operation, ``"<METHOD> <url> #n"``
    (calls made one after the other in the same order on every run get the same keys; calls
    made concurrently to one URL need labels of their own). Otherwise a new random key.
    """
    if key is not None:
        return key
    if method.upper() in SAFE_METHODS:
        return None
    operation = _running_operation()
    if operation is None:
        return new_key()
    from django_idempotency.core.derived_keys import derive_key  # Django is loaded: it runs

    return derive_key(label if label is not None else _default_label(operation, method, url))


def _running_operation() -> Any:
    # Only a process that loaded the engine can be running an operation: never import
    # Django (or configure settings) just to learn there is none.
    module = sys.modules.get("django_idempotency.core.operation")
    return None if module is None else module.current_operation()


def _default_label(operation: Any, method: str, url: str) -> str:
    label = f"{method.upper()} {url}"
    with _calls_lock:
        counts = _calls.get(id(operation))
        if counts is None:
            counts = _calls[id(operation)] = Counter()
            # Forget the counts with the operation (its id may be reused afterwards).
            weakref.finalize(operation, _forget, id(operation))
        counts[label] += 1
        seen = counts[label]
    return label if seen == 1 else f"{label} #{seen}"


def _forget(identity: int) -> None:
    with _calls_lock:
        _calls.pop(identity, None)
