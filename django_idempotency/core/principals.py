"""Whose keys these are: the principal part of a scope, for any door (DRF or a plain view)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookieSession
from django.utils.crypto import salted_hmac

from ..exceptions import AuthenticationRequired
from ..models import IdempotencyRecord

_SESSION_SALT = "django_idempotency.principals.session"  # never change: guests keep scopes
#: Session data naming the guest: kept by ``login()`` (``cycle_key()`` keeps the data), dropped
#: by ``logout()`` and by a login over another user's session (both ``flush()``).
GUEST_MARKER = "_idempotency_guest"

# Set while a door computes the scope a logged-in user's request had as a guest.
_as_guest: ContextVar[bool] = ContextVar("idempotency_principal_as_guest", default=False)


def user_principal(user: Any) -> str | None:
    """``app_label.model:pk`` of an authenticated user; ``None`` for an anonymous one.

    Only ``pk`` (or ``id``) is required of the user object: a stateless user such as
    djangorestframework-simplejwt's ``TokenUser`` has no ``_meta`` and is labelled with
    ``AUTH_USER_MODEL``, so the same account behind a JWT and behind a session is one scope.
    """
    pk = _user_pk(user)
    if pk is None:
        return None
    meta = getattr(user, "_meta", None)
    label = meta.label_lower if meta is not None else str(settings.AUTH_USER_MODEL).lower()
    return f"{label}:{pk}"


def _user_pk(user: Any) -> Any:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return getattr(user, "id", None) if pk is None else pk


def session_principal(request: Any, *, start: bool = False) -> str | None:
    """``session:<marker>`` for a guest, else ``None``.

    The marker lives in the session's data, so it survives the ``cycle_key()`` of a login: the
    guest's retry after logging in is still its own (see ``scope_after_login``). A session
    without one gets the HMAC of its key (the scope earlier releases gave it; the key itself is
    a secret and is never stored). Only a session the store holds counts: a cookie naming no
    stored session is no principal, so two guests never share a scope. A request with no
    session cookie at all gets a new random marker only with ``start`` (its session is then
    saved, and its cookie sent, with the answer).
    """
    session = getattr(request, "session", None)
    if session is None or isinstance(session, SignedCookieSession):
        # The signed-cookie backend's key is the data itself: it changes with every write.
        return None
    # Loading drops a key the store does not know (a forged or expired cookie).
    marker = session.get(GUEST_MARKER)
    if isinstance(marker, str) and marker:
        return f"session:{marker}"
    if session.session_key is not None:
        marker = salted_hmac(_SESSION_SALT, session.session_key, algorithm="sha256").hexdigest()
    elif start and settings.SESSION_COOKIE_NAME not in getattr(request, "COOKIES", {}):
        marker = secrets.token_hex(32)
    else:
        return None
    session[GUEST_MARKER] = marker  # marks the session modified: saved with the answer
    return f"session:{marker}"


def carried_guest_principal(request: Any) -> str | None:
    """The guest principal a signed-in user's session carries from before its login.

    Only a session that ``login()`` gave to this very user counts (its ``SESSION_KEY`` names
    the user): a token or Basic user sending someone's guest cookie never sees that guest's keys.
    """
    pk = _user_pk(getattr(request, "user", None))
    session = getattr(request, "session", None)
    if pk is None or session is None or isinstance(session, SignedCookieSession):
        return None
    marker = session.get(GUEST_MARKER)
    owner = session.get(SESSION_KEY)
    if not isinstance(marker, str) or not marker or owner is None or str(owner) != str(pk):
        return None
    return f"session:{marker}"


def start_guest_session(request: Any) -> None:
    """Give a guest a stored session, so a key issued to it (a form's) names it on submit."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if session is None or getattr(user, "is_authenticated", False):
        return
    if session.session_key is None:
        session.save()
        session.modified = True  # so SessionMiddleware sends the cookie


def request_principal(
    request: Any, *, guest_sessions: bool = False, start_session: bool = False
) -> str:
    """The authenticated user; with ``guest_sessions``, else the guest's session. Refuses the rest.

    ``request`` is a Django ``HttpRequest`` or anything that proxies ``user`` and ``session``
    (DRF's ``Request``). ``start_session``: a guest without any session cookie gets a new
    session (its first request may be the keyed one). Raises ``AuthenticationRequired``: never a
    shared anonymous scope.
    """
    if guest_sessions and _as_guest.get():
        carried = carried_guest_principal(request)
        if carried is not None:
            return carried
    principal = user_principal(getattr(request, "user", None))
    if principal is not None:
        return principal
    if guest_sessions:
        principal = session_principal(request, start=start_session)
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


def scope_after_login(
    request: Any, scope: str, scope_of: Callable[[], str], *, key: str, database: str
) -> str:
    """``scope``, or the scope the same client had as a guest when it used ``key`` there.

    A guest who logs in between two copies of a request sends the retry as the user: it must
    replay the guest's answer, not run again. ``scope_of`` recomputes the door's scope (the
    view's own hooks) with the guest's principal; only a record of that scope under this key
    makes the request the guest's retry, every other request keeps the user's scope.
    """
    if carried_guest_principal(request) is None:
        return scope
    with _acting_as_guest():
        guest_scope = scope_of()
    if guest_scope == scope:
        return scope  # the view does not scope guests by their session
    records = IdempotencyRecord.objects.using(database)
    return guest_scope if records.filter(scope=guest_scope, key=key).exists() else scope


@contextmanager
def _acting_as_guest() -> Iterator[None]:
    token = _as_guest.set(True)
    try:
        yield
    finally:
        _as_guest.reset(token)
