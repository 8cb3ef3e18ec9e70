"""What a deploy must never change: values computed once and compared on a later request.

A derived key, a guest's scope and an issued key's signature are recomputed by every request and
compared with what an earlier release stored or handed out. If one changed (a salt renamed with
its module, say), a retry crossing the deploy would run again or be refused. The expected values
were computed by the release before the package's layout changed.
"""

from __future__ import annotations

from django.core import signing
from django.test import override_settings
from django.utils.crypto import salted_hmac

from django_idempotency.core import principals
from django_idempotency.core.derived_keys import hmac_key
from django_idempotency.core.issued_keys import verify_issued_key


@override_settings(SECRET_KEY="pinned-secret", IDEMPOTENCY_DERIVED_KEY_SECRET=None)
def test_a_derived_key_is_what_earlier_releases_derived() -> None:
    assert hmac_key("payment-list|auth.user:1", "k1", "charge", "f" * 64) == (
        "idk_82de005071823a613807a35311acc44e257ee3654794303f855b9690c8d13a37"
    )


@override_settings(SECRET_KEY="pinned-secret")
def test_a_guest_session_digest_is_what_earlier_releases_computed() -> None:
    digest = salted_hmac(principals._SESSION_SALT, "sessionkey", algorithm="sha256").hexdigest()
    assert digest == "66b8d320a6d9af46dd067f84614f97212a33c41299d09cf7c6dc8df312e58058"


@override_settings(SECRET_KEY="pinned-secret")
def test_a_key_issued_by_an_earlier_release_still_verifies() -> None:
    # Signed as earlier releases sign: the salt names the principal and the endpoint.
    salt = 'django_idempotency.issued_keys:["auth.user:1", "*"]'  # never change (a pin)
    key = signing.TimestampSigner(salt=salt).sign("nonce")
    verify_issued_key(key, principal="auth.user:1", endpoint="payment-list")
