"""System checks for PostgreSQL behind a transaction-pooling proxy (PgBouncer and the like).

The layer itself needs nothing a transaction pooler takes away: the claim, the view and the
stored response share one transaction, and its only setting (``lock_timeout``) is local to that
transaction. What breaks is prepared statements: with psycopg 3, ``server_side_binding`` and a
``prepare_threshold``, the layer's statements (the same SQL on every request) are prepared on
one server session and then looked up, or prepared again, on another ("prepared statement
"_pg3_0" already exists"), so requests fail with 500s.

Django's documented setting for an alias behind a transaction pooler is
``DISABLE_SERVER_SIDE_CURSORS = True``; such an alias with prepared statements is refused.
With ``check --database``, an alias whose server reports another port than the one configured
is taken to sit behind a proxy, and a warning says what it needs if that proxy pools
transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning
from django.db import DatabaseError, connections


def check_pooling(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for alias in connections:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        messages.extend(settings_messages(alias, connection.settings_dict))
        if databases is not None and alias in databases:
            messages.extend(proxy_messages(alias, connection.settings_dict, server_port(alias)))
    return messages


def settings_messages(alias: str, settings_dict: Mapping[str, Any]) -> list[CheckMessage]:
    """What the alias's own settings say, without connecting."""
    if not settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
        return []
    if not prepares_statements(settings_dict):
        return []
    return [
        Error(
            f"Database {alias!r} is set up for a transaction pooler "
            "(DISABLE_SERVER_SIDE_CURSORS) but prepares statements (OPTIONS server_side_binding "
            "with a prepare_threshold): every idempotent request runs the same statements, "
            "which get prepared on one server session and fail on the next.",
            hint="Remove 'prepare_threshold' from OPTIONS (Django's default, None, prepares "
            "nothing), or pool sessions instead of transactions.",
            id="django_idempotency.E100",
        )
    ]


def proxy_messages(
    alias: str, settings_dict: Mapping[str, Any], port: int | None
) -> list[CheckMessage]:
    """What the live connection says: a server port other than the configured one means a
    proxy in between."""
    configured = int(settings_dict.get("PORT") or 5432)
    if port is None or port == configured:
        return []
    if settings_dict.get("DISABLE_SERVER_SIDE_CURSORS") and not prepares_statements(settings_dict):
        return []
    return [
        Warning(
            f"Database {alias!r} is reached on port {configured}, but the server listens on "
            f"{port}: a proxy (PgBouncer?) is in between. If it pools transactions, set "
            "DISABLE_SERVER_SIDE_CURSORS = True and keep prepared statements off.",
            hint="Behind a session pooler, silence this warning.",
            id="django_idempotency.W100",
        )
    ]


def prepares_statements(settings_dict: Mapping[str, Any]) -> bool:
    options = settings_dict.get("OPTIONS") or {}
    # Django's default cursor binds parameters on the client and never prepares.
    return (
        options.get("server_side_binding") is True and options.get("prepare_threshold") is not None
    )


def server_port(alias: str) -> int | None:
    """The port the PostgreSQL server itself listens on (``None`` over a Unix socket)."""
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT inet_server_port()")
            row = cursor.fetchone()
    except DatabaseError:
        return None  # the database checks of Django itself report an unreachable server
    return None if row is None or row[0] is None else int(row[0])


#: The tags to register the check with: ``register(*TAGS)(check_pooling)``. Tags.database
#: makes Django pass ``databases`` (only with ``check --database``), which enables the
#: connecting part.
TAGS = (Tags.compatibility, Tags.database)
