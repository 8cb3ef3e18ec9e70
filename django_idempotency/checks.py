"""System checks for the app's configuration and the databases it runs on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from . import checks_pooling
from .conf import app_settings
from .store import SUPPORTED_VENDORS


@register(Tags.compatibility, Tags.database, deploy=True)
def check_sqlite_in_production(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Only under ``check --deploy``: SQLite is fine, and common, in development."""
    return [
        Warning(
            f"Database {alias!r} is SQLite: idempotent requests are serialised by "
            "SQLite's single writer lock, and concurrent copies of a request get a 409 "
            "once its busy timeout passes. Use PostgreSQL in production.",
            id="django_idempotency.W001",
        )
        for alias in connections
        if connections[alias].vendor == "sqlite"
    ]


@register(Tags.compatibility, Tags.database)
def check_databases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for alias in connections:
        vendor = connections[alias].vendor
        if vendor not in SUPPORTED_VENDORS:
            messages.append(
                Error(
                    f"Database {alias!r} uses {vendor}, which django-idempotency does not "
                    "support; it needs PostgreSQL (or SQLite for development).",
                    hint="Route django_idempotency to a PostgreSQL database, or drop this alias.",
                    id="django_idempotency.E001",
                )
            )
    return messages


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    try:
        ttl = app_settings.TTL
        lock_timeout = app_settings.LOCK_TIMEOUT
        mismatch = app_settings.MISMATCH_STATUS
        release = app_settings.RELEASE_STATUS_CODES
        app_settings.REFERENCE_STATUS_CODES  # noqa: B018  (read for its type errors: E002)
        max_body = app_settings.MAX_STORED_BODY_SIZE
        relay_after = app_settings.OUTBOX_RELAY_AFTER
    except (TypeError, ValueError) as exc:
        return [
            Error(
                f"An IDEMPOTENCY_* setting has the wrong type: {exc}", id="django_idempotency.E002"
            )
        ]
    if ttl.total_seconds() <= 0:
        messages.append(Error("IDEMPOTENCY_TTL must be positive.", id="django_idempotency.E003"))
    if lock_timeout <= 0:
        messages.append(
            Error("IDEMPOTENCY_LOCK_TIMEOUT must be positive.", id="django_idempotency.E004")
        )
    if mismatch not in (409, 422):
        messages.append(
            Warning(
                f"IDEMPOTENCY_MISMATCH_STATUS is {mismatch}; clients expect 422 (the IETF draft) "
                "or 409.",
                id="django_idempotency.W002",
            )
        )
    if any(code < 400 or code > 499 for code in release):
        messages.append(
            Error(
                "IDEMPOTENCY_RELEASE_STATUS_CODES may only list 4xx statuses "
                "(every 5xx is released anyway).",
                id="django_idempotency.E005",
            )
        )
    if max_body <= 0:
        messages.append(
            Error(
                "IDEMPOTENCY_MAX_STORED_BODY_SIZE must be positive.",
                id="django_idempotency.E006",
            )
        )
    if relay_after.total_seconds() < 0:
        messages.append(
            Error(
                "IDEMPOTENCY_OUTBOX_RELAY_AFTER must not be negative.",
                id="django_idempotency.E008",
            )
        )
    if not getattr(settings, "USE_TZ", True):
        messages.append(
            Warning(
                "USE_TZ is False: record expiry is compared in local time.",
                id="django_idempotency.W003",
            )
        )
    return messages


register(*checks_pooling.TAGS)(checks_pooling.check_pooling)


@register(Tags.compatibility)
def check_hidden_creates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A ``create()`` on a view that hides ``IdempotentCreateMixin``'s runs unprotected, or
    turns errors into answers outside the stored transaction (a 402 released, paid twice)."""
    try:
        from .drf import HIDDEN_CREATES
    except ImportError:  # DRF is not installed: no DRF views to check
        return []
    return [
        Error(
            f"{view.__module__}.{view.__qualname__} defines create() in front of "
            "IdempotentCreateMixin's, so keyed requests are not (or only partly) exactly-once.",
            hint="Decorate that create() with @django_idempotency.drf.idempotent(), or move it "
            "to a class listed after IdempotentCreateMixin in the bases.",
            obj=view,
            id="django_idempotency.E007",
        )
        for view in HIDDEN_CREATES
    ]
