"""Server-issued idempotency keys: signed, bound to a principal and an endpoint, expiring.

A key is ``<nonce>:<timestamp>:<signature>`` from ``django.core.signing.TimestampSigner``. The
principal and the endpoint are part of the signer's salt, so they never appear in the key: a
key issued to someone else, or for another endpoint, simply fails to verify.
``SECRET_KEY_FALLBACKS`` is honoured, so rotating the secret does not break keys in flight.

A key's age limits only what it may start: the doors verify the signature (principal, endpoint)
before anything, and the engine refuses an expired key only when its claim would start a new
operation, judged by the clock that dates the records (``Operation.key_expires_at``). A retry
whose record exists replays, whatever the key's age.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core import signing
from django.utils import timezone

from ..conf import app_settings
from ..exceptions import InvalidIssuedKey

_SALT = "django_idempotency.issued_keys"  # never change: it would void every key issued
#: The endpoint of a key issued to API clients: valid on every endpoint that takes issued keys.
ANY_ENDPOINT = "*"


def max_age() -> timedelta:
    """How long a key may start an operation: never longer than ``IDEMPOTENCY_TTL``, so an
    issued key cannot outlive the record that turns its retry into a replay."""
    return min(app_settings.ISSUED_KEY_MAX_AGE, app_settings.TTL)


def record_ttl(ttl: timedelta) -> timedelta:
    """How long the answer to a request under an issued key is kept: its view's ``ttl``, but
    never less than a key may start an operation, or a late retry would run it again."""
    return max(ttl, max_age())


@dataclass(frozen=True)
class IssuedKey:
    key: str
    #: After this moment the key can no longer start an operation.
    expires_at: datetime


class _KeySigner(signing.TimestampSigner):
    """Stamps a key by ``timezone.now()`` and reads the stamp back without judging its age."""

    def timestamp(self) -> str:
        return signing.b62_encode(int(timezone.now().timestamp()))

    def issued_at(self, key: str) -> datetime:
        """When ``key`` was issued; ``BadSignature`` unless this signer signed it."""
        stamped = signing.Signer.unsign(self, key)  # the signature only, whatever the age
        return _stamp_time(stamped.rsplit(self.sep, 1)[1])


def _stamp_time(stamp: str) -> datetime:
    return datetime.fromtimestamp(signing.b62_decode(stamp), tz=dt_timezone.utc)


def _signer(principal: str, endpoint: str) -> _KeySigner:
    # JSON keeps the two parts apart: ("a|b", "c") and ("a", "b|c") are different salts.
    return _KeySigner(salt=f"{_SALT}:{json.dumps([principal, endpoint])}")


def issue_key(principal: str, endpoint: str = ANY_ENDPOINT) -> IssuedKey:
    """A fresh key for ``principal`` on ``endpoint`` (a scope name; ``*``: any endpoint)."""
    signer = _signer(principal, endpoint)
    key = signer.sign(secrets.token_urlsafe(16))
    return IssuedKey(key=key, expires_at=signer.issued_at(key) + max_age())


def verify_issued_key(key: str, *, principal: str, endpoint: str) -> None:
    """Raise ``InvalidIssuedKey`` unless ``key`` was issued to ``principal`` for ``endpoint``
    (or for any endpoint). Its age is not judged here: see ``key_expires_at``."""
    for bound in dict.fromkeys((endpoint, ANY_ENDPOINT)):
        try:
            _signer(principal, bound).issued_at(key)
        except signing.BadSignature:
            continue
        return
    raise InvalidIssuedKey()


def key_expires_at(key: str) -> datetime:
    """When a verified ``key`` stops being able to start an operation (``IssuedKeyExpired``).

    The moment is read from the key's stamp (the issuing server's clock) and compared by the
    engine with the clock that dates the records: the database's on PostgreSQL.
    """
    parts = key.rsplit(":", 2)
    try:
        return _stamp_time(parts[-2]) + max_age()
    except (IndexError, ValueError, OverflowError, OSError):
        # Only a key that skipped verification (an overridden hook) lands here: refuse it.
        raise InvalidIssuedKey() from None
