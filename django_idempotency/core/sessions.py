"""What a released answer must not undo: the client's session, written again after the rollback.

A release rolls back the view's writes on the operation's database. When the view created,
cycled or flushed the client's session there (``session.save()``, ``cycle_key()``, ``login()``,
``logout()``), the database session backend wrote in that same transaction, so the rollback
undoes it and ``SessionMiddleware`` then answers ``400`` (``SessionInterrupted``) instead of
the view's own answer. The session is the client's, not the operation's: what the view did to
it is done again after the release.
"""

from __future__ import annotations

from django.contrib.sessions.backends.base import CreateError
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import router
from django.http import HttpRequest


def session_key(request: HttpRequest) -> str | None:
    """The session's key before the view runs (reading it does not load the session)."""
    session = getattr(request, "session", None)
    return None if session is None else session.session_key


def restore_session(request: HttpRequest, key_before: str | None, database: str) -> None:
    """Redo what the view did to the session's row on ``database`` in a released run.

    Only a session whose key the view changed can have been written there (an unchanged key's
    data is saved by ``SessionMiddleware`` after the view anyway). Sessions kept elsewhere (a
    cache, signed cookies, another database) were not rolled back, and are left alone.
    """
    session = getattr(request, "session", None)
    if not isinstance(session, DatabaseSessionStore):  # cached_db included
        return
    if router.db_for_write(session.model) != database:
        return
    key = session.session_key
    if key == key_before:
        return
    if key is not None:
        try:
            session.save(must_create=True)
        except CreateError:
            return  # the row is there: nothing was rolled back
    if key_before is not None:
        session.delete(key_before)  # what cycle_key() or flush() had done
