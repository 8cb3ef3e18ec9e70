"""Whose keys these are: the principal part of a scope, for any door (DRF or a plain view)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookieSession
from django.utils.crypto import salted_hmac

from .exceptions import AuthenticationRequired

_SESSION_SALT = "django_idempotency.principals.session"


def user_principal(user: Any) -> str | None:
    """``app_label.model:pk`` of an authenticated user; ``None`` for an anonymous one.

    Only ``pk`` (or ``id``) is required of the user object: a stateless user such as
    djangorestframework-simplejwt's ``TokenUser`` has no ``_meta`` and is labelled with
    ``AUTH_USER_MODEL``, so the same account behind a JWT and behind a session is one scope.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    if pk is None:
        pk = getattr(user, "id", None)
    if pk is None:
        return None
    meta = getattr(user, "_meta", None)
    label = meta.label_lower if meta is not None else str(settings.AUTH_USER_MODEL).lower()
    return f"{label}:{pk}"


def session_principal(request: Any) -> str | None:
    """``session:<digest>`` for a guest with an established server-side session, else ``None``.

    The digest is an HMAC of the session key (the key itself is a secret and is never stored).
    Only a session the store already holds counts: a cookie naming no stored session, or no
    cookie at all, is no principal, so two guests can never share a scope, and a guest whose
    session would only be created by this request is refused instead of being given a scope
    that its retry (without the lost cookie) could not find again.
    """
    session = getattr(request, "session", None)
    if session is None or isinstance(session, SignedCookieSession):
        # The signed-cookie backend's key is the data itself: it changes with every write.
        return None
    if session.session_key is None:
        return None
    # Loading drops a key the store does not know (a forged or expired cookie).
    session.keys()
    key = session.session_key
    if key is None:
        return None
    return "session:" + salted_hmac(_SESSION_SALT, key, algorithm="sha256").hexdigest()


def start_guest_session(request: Any) -> None:
    """Give a guest a stored session, so a key issued to it (a form's) names it on submit."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if session is None or getattr(user, "is_authenticated", False):
        return
    if session.session_key is None:
        session.save()
        session.modified = True  # so SessionMiddleware sends the cookie


def request_principal(request: Any, *, guest_sessions: bool = False) -> str:
    """The authenticated user; with ``guest_sessions``, else the guest's session. Refuses the rest.

    ``request`` is a Django ``HttpRequest`` or anything that proxies ``user`` and ``session``
    (DRF's ``Request``). Raises ``AuthenticationRequired``: never a shared anonymous scope.
    """
    principal = user_principal(getattr(request, "user", None))
    if principal is not None:
        return principal
    if guest_sessions:
        principal = session_principal(request)
        if principal is not None:
            return principal
        raise AuthenticationRequired(
            "Idempotency keys of guests are bound to their session (the session cookie is "
            "missing, expired, or names no stored session); nothing was performed for this "
            "request. A key issued to a lost session cannot be used again: if an earlier "
            "attempt of this request may have been performed, check its result before you "
            "start a session and send it anew.",
            # The key died with the session: only a new key can follow, and nothing ran.
            retry="new",
        )
    raise AuthenticationRequired()
