"""Server-issued idempotency keys: signed, bound to a principal and an endpoint, expiring.

A key is ``<nonce>:<timestamp>:<signature>`` from ``django.core.signing.TimestampSigner``. The
principal and the endpoint are part of the signer's salt, so they never appear in the key: a
key issued to someone else, or for another endpoint, simply fails to verify.
``SECRET_KEY_FALLBACKS`` is honoured, so rotating the secret does not break keys in flight.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core import signing
from django.utils import timezone

from .conf import app_settings
from .exceptions import InvalidIssuedKey, IssuedKeyExpired

_SALT = "django_idempotency.issued_keys"
#: The endpoint of a key issued to API clients: valid on every endpoint that takes issued keys.
ANY_ENDPOINT = "*"


def max_age() -> timedelta:
    """How long a key is accepted: never longer than ``IDEMPOTENCY_TTL``, so an issued key
    cannot outlive the record that turns its retry into a replay."""
    return min(app_settings.ISSUED_KEY_MAX_AGE, app_settings.TTL)


@dataclass(frozen=True)
class IssuedKey:
    key: str
    expires_at: datetime


def _signer(principal: str, endpoint: str) -> signing.TimestampSigner:
    # JSON keeps the two parts apart: ("a|b", "c") and ("a", "b|c") are different salts.
    return signing.TimestampSigner(salt=f"{_SALT}:{json.dumps([principal, endpoint])}")


def issue_key(principal: str, endpoint: str = ANY_ENDPOINT) -> IssuedKey:
    """A fresh key for ``principal`` on ``endpoint`` (a scope name; ``*``: any endpoint)."""
    # Whole seconds: the signer's timestamp is, and the reported expiry must not be later.
    now = timezone.now().replace(microsecond=0)
    key = _signer(principal, endpoint).sign(secrets.token_urlsafe(16))
    return IssuedKey(key=key, expires_at=now + max_age())


def verify_issued_key(key: str, *, principal: str, endpoint: str) -> None:
    """Raise ``InvalidIssuedKey`` unless ``key`` was issued to ``principal`` for ``endpoint``
    (or for any endpoint) and has not expired (``IssuedKeyExpired``)."""
    accepted_for = max_age()
    for bound in dict.fromkeys((endpoint, ANY_ENDPOINT)):
        try:
            _signer(principal, bound).unsign(key, max_age=accepted_for)
        except signing.SignatureExpired:
            # Only a genuine key can be found expired: the signature was checked first.
            raise IssuedKeyExpired() from None
        except signing.BadSignature:
            continue
        return
    raise InvalidIssuedKey()
