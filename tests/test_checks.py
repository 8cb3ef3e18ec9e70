"""System checks: each misconfiguration is reported under its documented id."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db.utils import ConnectionHandler
from django.test import override_settings

from django_idempotency import checks

# Django 6.1 runs the model checks against every database alias (a JSONField asks SQLite
# whether it supports JSON), so the checks need database access like `manage.py check` has.
pytestmark = pytest.mark.django_db(databases="__all__")


def idempotency_ids() -> list[str]:
    return sorted(
        message.id
        for message in run_checks()
        if message.id
        and message.id.startswith("django_idempotency.")
        and message.id != "django_idempotency.W001"  # the test database may well be SQLite
    )


def test_the_default_settings_pass() -> None:
    assert idempotency_ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"IDEMPOTENCY_TTL": "soon"}, "E002"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": "long"}, "E002"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": None}, "E002"),
        ({"IDEMPOTENCY_TTL": 0}, "E003"),
        ({"IDEMPOTENCY_TTL": timedelta(hours=-1)}, "E003"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": 0}, "E004"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": [400, 500]}, "E005"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": [200]}, "E005"),
        ({"IDEMPOTENCY_MAX_STORED_BODY_SIZE": 0}, "E006"),
        ({"IDEMPOTENCY_OUTBOX_RELAY_AFTER": "soon"}, "E002"),
        ({"IDEMPOTENCY_OUTBOX_RELAY_AFTER": -1}, "E008"),
        ({"IDEMPOTENCY_MISMATCH_STATUS": 400}, "W002"),
        ({"USE_TZ": False}, "W003"),
    ],
)
def test_bad_settings_are_reported(overrides: dict[str, Any], expected: str) -> None:
    with override_settings(**overrides):
        assert idempotency_ids() == [f"django_idempotency.{expected}"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"IDEMPOTENCY_MISMATCH_STATUS": 409},
        {"IDEMPOTENCY_TTL": 60, "IDEMPOTENCY_LOCK_TIMEOUT": 0.5},
        {"IDEMPOTENCY_RELEASE_STATUS_CODES": []},
        {"IDEMPOTENCY_OUTBOX_RELAY_AFTER": 0},
    ],
)
def test_good_alternatives_pass(overrides: dict[str, Any]) -> None:
    with override_settings(**overrides):
        assert idempotency_ids() == []


def test_an_error_stops_manage_py() -> None:
    with override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0), pytest.raises(SystemCheckError) as raised:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "django_idempotency.E004" in str(raised.value)


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("django.db.backends.postgresql", []),
        ("django.db.backends.sqlite3", ["django_idempotency.W001"]),
        ("django.db.backends.dummy", ["django_idempotency.E001"]),  # an unsupported vendor
    ],
)
def test_database_vendors_are_checked(
    monkeypatch: pytest.MonkeyPatch, engine: str, expected: list[str]
) -> None:
    # A real (never opened) connection per engine; the checks only read its vendor.
    handler = ConnectionHandler({"default": {"ENGINE": engine, "NAME": "app"}})
    monkeypatch.setattr(checks, "connections", handler)
    found = [*checks.check_sqlite_in_production(), *checks.check_databases()]
    assert [message.id for message in found] == expected


def test_the_pooling_check_is_registered() -> None:
    from django.core.checks.registry import registry

    from django_idempotency.checks_pooling import check_pooling

    assert check_pooling in registry.get_checks()
