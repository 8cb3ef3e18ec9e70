"""The fingerprint of a task's call: its name and arguments in the form the message carries."""

from __future__ import annotations

import hashlib
from typing import Any

from kombu import serialization
from kombu.utils.json import dumps as kombu_json

from ...core.fingerprint import canonical_json
from ...once import refuse_non_string_keys


def task_fingerprint(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], serializer: str = "json"
) -> str:
    """SHA-256 of the task name and its arguments in the form the message carries them.

    With JSON (Celery's default) that is kombu's own encoding, which carries ``Decimal``,
    ``datetime``, ``date``, ``time``, ``UUID`` and bytes as typed values and decodes them back,
    so a redelivery re-encodes to the same document; its members are then put in key order.
    With another serializer, the bytes it writes for them (never a false match: at worst two
    equal calls differ, a refusal). Raises what the serializer raises for what it cannot carry.
    """
    document = [name, list(args), kwargs]
    if serializer == "json":
        # The wire has string keys only; an eager call may not, and JSON would merge {1: x}
        # and {"1": x}.
        refuse_non_string_keys(document)
        canonical = canonical_json(kombu_json(document).encode())  # type: ignore[no-untyped-call]
        if canonical is not None:
            return hashlib.sha256(canonical).hexdigest()
    content_type, encoding, payload = serialization.dumps(  # type: ignore[no-untyped-call]
        document, serializer=serializer
    )
    digest = hashlib.sha256(f"{content_type};{encoding}\0".encode())
    digest.update(payload if isinstance(payload, bytes) else str(payload).encode())
    return digest.hexdigest()


def name_fingerprint(name: str) -> str:
    """The fingerprint of a task whose arguments cannot be fingerprinted: its name alone (a
    redelivery of it answers the same stored failure)."""
    return hashlib.sha256(f"unfingerprintable\0{name}".encode()).hexdigest()
