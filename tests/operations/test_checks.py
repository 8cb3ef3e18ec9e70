"""System checks: each misconfiguration is reported under its documented id."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db.utils import ConnectionHandler
from django.test import override_settings

from django_idempotency import checks, conf
from django_idempotency.checks import views as checks_views
from tests.testapp import views_checks, views_drf

# Django 6.1 runs the model checks against every database alias (a JSONField asks SQLite
# whether it supports JSON), so the checks need database access like `manage.py check` has.
pytestmark = [pytest.mark.drf, pytest.mark.django_db(databases="__all__")]


#: Views the test project routes although they are misconfigured, to test what a request to
#: them gets; the view checks report them (``test_the_routed_views_are_judged``).
ROUTED_ON_PURPOSE = {
    views_drf.WrappedCreateViewSet: "django_idempotency.E007",
    views_drf.ShadowingViewSet: "django_idempotency.E007",
    views_drf.WithoutMixinAPIView: "django_idempotency.E030",
}


def idempotency_ids() -> list[str]:
    return sorted(
        message.id
        for message in run_checks()
        if message.id
        and message.id.startswith("django_idempotency.")
        and message.id != "django_idempotency.W001"  # the test database may well be SQLite
        and message.obj not in ROUTED_ON_PURPOSE
    )


def test_the_default_settings_pass() -> None:
    assert idempotency_ids() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"IDEMPOTENCY_TTL": "soon"}, "E002"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": "long"}, "E002"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": None}, "E002"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": "400"}, "E002"),  # three "codes" once iterated
        ({"IDEMPOTENCY_TTL": float("nan")}, "E002"),
        ({"IDEMPOTENCY_TTL": 0}, "E003"),
        ({"IDEMPOTENCY_TTL": timedelta(hours=-1)}, "E003"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": 0}, "E004"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": float("inf")}, "E004"),
        ({"IDEMPOTENCY_LOCK_TIMEOUT": 3_000_000}, "E004"),  # over PostgreSQL's lock_timeout
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": [400, 500]}, "E005"),
        ({"IDEMPOTENCY_RELEASE_STATUS_CODES": [200]}, "E005"),
        ({"IDEMPOTENCY_MAX_STORED_BODY_SIZE": 0}, "E006"),
        ({"IDEMPOTENCY_OUTBOX_RELAY_AFTER": "soon"}, "E002"),
        ({"IDEMPOTENCY_OUTBOX_RELAY_AFTER": -1}, "E008"),
        ({"IDEMPOTENCY_RETRY_AFTER": -1}, "E020"),
        ({"IDEMPOTENCY_ISSUED_KEY_MAX_AGE": 0}, "E021"),
        ({"IDEMPOTENCY_MAX_EVENTS_PER_RECORD": "20"}, "E002"),
        ({"IDEMPOTENCY_MISMATCH_STATUS": 400}, "W002"),
        ({"IDEMPOTENCY_MISMATCH_STATUS": 99}, "E002"),  # Django cannot send it at all
        ({"USE_TZ": False}, "W003"),
    ],
)
def test_bad_settings_are_reported(overrides: dict[str, Any], expected: str) -> None:
    with override_settings(**overrides):
        assert idempotency_ids() == [f"django_idempotency.{expected}"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"IDEMPOTENCY_TTL": timedelta.max},  # "keep them for ever"
        {"IDEMPOTENCY_TTL": 10**12},  # seconds: some 31,700 years
        {"IDEMPOTENCY_REFERENCE_TTL": timedelta.max},
    ],
)
def test_a_lifetime_no_date_can_hold_is_reported(overrides: dict[str, Any]) -> None:
    """Now plus such a lifetime is past year 9999: every keyed request was a 500
    (``OverflowError: date value out of range``) although the checks passed."""
    with override_settings(**overrides):
        assert idempotency_ids() == ["django_idempotency.E002"]


#: A value of each setting that must not pass, and the id it is reported under. Keyed by the
#: ``conf.Settings`` property: a new setting fails ``test_every_setting_is_checked`` until it
#: gets a bad value here and a rule in ``checks.SETTING_RULES``.
BAD_VALUES: dict[str, tuple[Any, str]] = {
    "HEADER": ("Idempotency Key", "E002"),  # a space: no client could send it
    "TTL": ("a day", "E002"),
    "REFERENCE_TTL": ("forever", "E002"),
    "LOCK_TIMEOUT": (-1, "E004"),
    "RETRY_AFTER": ("soon", "E002"),  # was a 500 in the 409 path
    "MISMATCH_STATUS": ("422", "E002"),
    "RELEASE_STATUS_CODES": ([400, "406"], "E002"),
    "NEVER_REPLAYED_HEADERS": ("X-Request-Id", "E002"),
    "MAX_STORED_BODY_SIZE": ("6MB", "E002"),
    "PROBLEM_TYPE_BASE": (None, "E002"),
    "RECORD_EVENTS": ("false", "E002"),  # bool("false") is True
    "MAX_EVENTS_PER_RECORD": (-1, "E022"),
    "DERIVED_KEY_SECRET": (b"secret", "E002"),
    "ISSUED_KEY_MAX_AGE": ("abc", "E002"),  # was a 500 when a key was issued or verified
    "ISSUED_KEY_FIELD": ("", "E002"),
    "OUTBOX_RELAY_AFTER": (timedelta(seconds=-1), "E008"),
    "REFERENCE_STATUS_CODES": ([201, 402], "E023"),  # a 402 decline would hold the order
    "KEY_REQUIRED": ("no", "E002"),  # bool("no") is True
    "PRINCIPAL": ("guest", "E002"),  # was a ValueError at request time
    "TASK_MAX_DELIVERIES": (0, "E024"),  # no delivery could ever run
    "METRICS": (["statsd"], "E025"),  # no such exporter: nothing would be measured
}


def setting_names() -> list[str]:
    return sorted(
        name for name, member in vars(conf.Settings).items() if isinstance(member, property)
    )


@pytest.mark.parametrize("name", setting_names())
def test_every_setting_is_checked(name: str) -> None:
    assert name in BAD_VALUES, f"IDEMPOTENCY_{name} has no bad value here (nor, likely, a check)"
    value, expected = BAD_VALUES[name]
    with override_settings(**{f"IDEMPOTENCY_{name}": value}):
        found = [m for m in run_checks() if m.id == f"django_idempotency.{expected}"]
    assert [f"IDEMPOTENCY_{name}" in m.msg for m in found] == [True], found


def test_a_secret_is_not_shown_in_its_message() -> None:
    with override_settings(IDEMPOTENCY_DERIVED_KEY_SECRET=b"hunter2"):
        (message,) = [m for m in run_checks() if m.id == "django_idempotency.E002"]
    assert "hunter2" not in message.msg


@pytest.mark.parametrize(
    "overrides",
    [
        {"IDEMPOTENCY_MISMATCH_STATUS": 409},
        {"IDEMPOTENCY_TTL": 60, "IDEMPOTENCY_LOCK_TIMEOUT": 0.5},
        {"IDEMPOTENCY_RELEASE_STATUS_CODES": []},
        {"IDEMPOTENCY_OUTBOX_RELAY_AFTER": 0},
        {"IDEMPOTENCY_RELEASE_STATUS_CODES": (400, 406), "IDEMPOTENCY_RETRY_AFTER": 0},
        {"IDEMPOTENCY_RELEASE_STATUS_CODES": frozenset({422})},
        {"IDEMPOTENCY_HEADER": "X-Key"},
        {"IDEMPOTENCY_NEVER_REPLAYED_HEADERS": ("X-Request-Id",)},
        {"IDEMPOTENCY_REFERENCE_TTL": timedelta(days=30), "IDEMPOTENCY_ISSUED_KEY_MAX_AGE": 600},
        {"IDEMPOTENCY_MAX_STORED_BODY_SIZE": None, "IDEMPOTENCY_DERIVED_KEY_SECRET": "s"},
        {"IDEMPOTENCY_RECORD_EVENTS": False, "IDEMPOTENCY_LOCK_TIMEOUT": 0.001},
        {"IDEMPOTENCY_MAX_EVENTS_PER_RECORD": 0},
        {"IDEMPOTENCY_METRICS": ["prometheus", "opentelemetry"]},
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

    from django_idempotency.checks.pooling import check_pooling

    assert check_pooling in registry.get_checks()


# -- the views the URLconf routes (E007, E030) ------------------------------------------------


def view_messages() -> list[tuple[str | None, Any]]:
    return [
        (message.id, message.obj)
        for message in run_checks(tags=["urls"])
        if message.id in ("django_idempotency.E007", "django_idempotency.E030")
    ]


def test_the_routed_views_are_judged() -> None:
    assert sorted(view_messages(), key=str) == sorted(
        ((check_id, view) for view, check_id in ROUTED_ON_PURPOSE.items()), key=str
    )


@override_settings(ROOT_URLCONF="tests.urls_view_checks")
def test_views_are_found_through_includes_namespaces_and_decorators() -> None:
    # Sorted: the checks run in the registry's order, which random test order can change.
    assert sorted(view_messages(), key=str) == [
        ("django_idempotency.E007", views_checks.HiddenCreateViewSet),
        ("django_idempotency.E030", views_checks.WithoutMixinView),
    ]
    assert views_checks.MixinInSubclassView in checks_views.routed_view_classes()
    assert views_checks.UndecoratedOverrideView in checks_views.routed_view_classes()


@override_settings(ROOT_URLCONF=None)
def test_a_project_without_urls_has_no_views_to_judge() -> None:
    assert checks_views.routed_view_classes() == []


def manage_py_check(settings_module: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` in a fresh interpreter: only what the command itself imports."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "DJANGO_SETTINGS_MODULE": settings_module}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manage_py_check_reports_the_views_without_importing_them_first() -> None:
    """It said nothing while ``migrate`` (which loads the URLconf) failed with E007."""
    result = manage_py_check("tests.settings_view_checks")
    assert result.returncode == 1, result.stdout + result.stderr
    reported = [line for line in result.stderr.splitlines() if "django_idempotency.E0" in line]
    assert len(reported) == 2, result.stderr
    assert "views_checks.HiddenCreateViewSet" in reported[0]
    assert "django_idempotency.E007" in reported[0]
    assert "views_checks.WithoutMixinView" in reported[1]
    assert "django_idempotency.E030" in reported[1]


def test_the_example_project_passes_manage_py_check() -> None:
    result = manage_py_check("example_project.settings")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_check_id_is_documented() -> None:
    """An id is a promise to the projects that silence it: each one in the code is listed."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"django_idempotency\.[EW]\d{3}")
    in_code = {
        found
        for path in (root / "django_idempotency").rglob("*.py")
        for found in pattern.findall(path.read_text())
    }
    documented = set(pattern.findall((root / "docs" / "settings.md").read_text()))
    assert in_code, "no check id found in the package"
    assert in_code <= documented, sorted(in_code - documented)


@override_settings(ROOT_URLCONF="tests.urls_view_order")
def test_the_mixin_listed_after_the_drf_view_class_is_reported(api) -> None:
    # What goes wrong at run time: the key on the undecorated PUT is silently ignored.
    put = api.put("/misordered/", {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert put.status_code == 200
    assert view_messages() == [("django_idempotency.E030", views_checks.MixinAfterViewClassView)]
