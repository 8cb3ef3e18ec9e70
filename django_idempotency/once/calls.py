"""The fingerprint of a call: its name and arguments in canonical JSON, refused where JSON would
make two different calls look alike. ``IdempotentTask`` checks its arguments with these too."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..core.fingerprint import canonical_json

_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def call_fingerprint(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """SHA-256 of the callable's name and its arguments in canonical JSON.

    Arguments must be JSON-serialisable: a lossy stand-in (``repr``) could make two different
    calls look alike, and a false match is the one mistake this package never makes.
    """
    too_deep = "The arguments are nested too deeply to fingerprint the call."
    try:
        refuse_non_string_keys([args, kwargs])
        refuse_surrogate_pairs([args, kwargs])
        document = json.dumps([name, list(args), kwargs], allow_nan=False).encode()
    except RecursionError:
        raise TypeError(too_deep) from None
    canonical = canonical_json(document)
    if canonical is None:  # json.dumps wrote it, so it parses, unless nested past the limit
        raise TypeError(too_deep)
    return hashlib.sha256(canonical).hexdigest()


def refuse_non_string_keys(value: Any) -> None:
    """Raise ``TypeError`` for a dictionary key, at any depth, that is not a string."""
    # json.dumps writes {1: x}, {"1": x} and {True: x} / {"true": x} alike: a false match.
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"Dictionary keys must be strings to fingerprint a call: {name!r}")
            refuse_non_string_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            refuse_non_string_keys(item)


def refuse_surrogate_pairs(value: Any) -> None:
    """Raise ``ValueError`` for text, at any depth, with a high surrogate before a low one."""
    # JSON's escapes write the two code points U+D83D U+DE00 as they write the one character
    # U+1F600, and read both back as the character: two different calls, one fingerprint.
    if isinstance(value, str):
        if _SURROGATE_PAIR.search(value):
            raise ValueError(
                "Text with a surrogate pair cannot be told from the character it encodes: "
                f"{value!r}"
            )
    elif isinstance(value, dict):
        for name, item in value.items():
            refuse_surrogate_pairs(name)
            refuse_surrogate_pairs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            refuse_surrogate_pairs(item)
