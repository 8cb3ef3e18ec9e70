"""Parsing of the Idempotency-Key header value into a key."""

from __future__ import annotations

from ..exceptions import InvalidKey

MAX_KEY_LENGTH = 255
_PRINTABLE = frozenset(chr(code) for code in range(0x20, 0x7F))


def parse_key(raw: str | None) -> str | None:
    """Return the key a header value names, ``None`` when the header is absent.

    The value is either the key itself or an RFC 8941 sf-string (``"abc"``, the IETF draft's
    form) that denotes it, so ``abc`` and ``"abc"`` are the same key. Raises ``InvalidKey``.

    Two ``Idempotency-Key`` headers reach the application joined by a comma (RFC 9110 5.3), and
    the draft defines the field as a single sf-string, never a list. So a comma outside quotes
    means a list, which is refused: guessing one of its members could pair a retry with the
    wrong operation. A key that really contains a comma is sent quoted (``"a,b"``).
    """
    if raw is None:
        return None
    if raw.startswith('"'):
        key = _unquote(raw)
    elif '"' in raw:
        raise InvalidKey("Quotes are only allowed around the whole Idempotency-Key.")
    elif "," in raw:
        raise InvalidKey(
            "The Idempotency-Key header holds a list (several headers, or a comma outside "
            'quotes); send exactly one key, quoted as an sf-string ("a,b") if it has a comma.'
        )
    else:
        key = raw
    _validate(key)
    return key


def _unquote(raw: str) -> str:
    chars: list[str] = []
    escaped = False
    for position, char in enumerate(raw[1:], start=1):
        if escaped:
            if char not in '"\\':
                raise InvalidKey('Only \\" and \\\\ may be escaped in a quoted Idempotency-Key.')
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if position != len(raw) - 1:
                raise InvalidKey("Unexpected characters after the closing quote of the key.")
            return "".join(chars)
        else:
            chars.append(char)
    raise InvalidKey("The quoted Idempotency-Key has no closing quote.")


def _validate(key: str) -> None:
    if not key:
        raise InvalidKey("The Idempotency-Key header is empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(
            f"The Idempotency-Key is {len(key)} characters long; at most {MAX_KEY_LENGTH} "
            "are allowed."
        )
    if not _PRINTABLE.issuperset(key):
        raise InvalidKey(
            "The Idempotency-Key may only contain printable ASCII characters (0x20-0x7E)."
        )
    if key != key.strip(" "):
        raise InvalidKey("The Idempotency-Key may not start or end with a space.")
