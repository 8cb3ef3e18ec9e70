"""Business references on every door: what a column can hold, and one text per value.

A reference names the business object a request acts on (an order); only one success per
(scope, reference) may exist. Every door checks its value with ``unsafe`` before any statement
and stores it through ``storable``; the DRF door first resolves it with the serializer's field
(``drf/references.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django.db.models import Model

# The widest integer every supported database binds (SQLite raises OverflowError beyond it).
MAX_LOOKUP_INT = 2**63 - 1
_MAX_LENGTH = 255
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def unsafe(value: Any, *, lookup: bool = False) -> str | None:
    """Why ``value`` must not reach a statement, or ``None``. Checks nested values too."""
    if isinstance(value, str):
        if "\x00" in value:
            return "Null characters are not allowed."
        for char in value:
            if "\ud800" <= char <= "\udfff":
                return f"Surrogate characters are not allowed: U+{ord(char):X}."
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "A valid number is required."
    if lookup and isinstance(value, int) and abs(value) > MAX_LOOKUP_INT:
        return "Invalid value."
    if isinstance(value, Mapping):
        for item in (*value.keys(), *value.values()):
            problem = unsafe(item, lookup=lookup)
            if problem is not None:
                return problem
    elif isinstance(value, list | tuple):
        for item in value:
            problem = unsafe(item, lookup=lookup)
            if problem is not None:
                return problem
    return None


def storable(reference: str) -> str:
    """A reference any database column takes: long or unencodable ones become a digest, and
    so does one that reads like a digest, which would otherwise name the digested reference."""
    if (
        len(reference) <= _MAX_LENGTH
        and unsafe(reference) is None
        and not _DIGEST.fullmatch(reference)
    ):
        return reference
    data = reference.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()


def text(value: Any) -> str:
    if isinstance(value, Model):
        return str(value.pk)
    if isinstance(value, list | tuple | set | frozenset):
        # Many related objects: one reference for the set, whatever order they were sent in.
        return ",".join(sorted(text(item) for item in value))
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
