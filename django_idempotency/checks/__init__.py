"""System checks for the app's configuration and the databases it runs on."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from ..conf import METRICS_EXPORTERS, PRINCIPALS, app_settings
from ..core.store import SUPPORTED_VENDORS
from . import metrics as checks_metrics
from . import pooling as checks_pooling
from . import views as checks_views


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
                    "support; it needs PostgreSQL, MariaDB 10.6+ or MySQL 8.0+ (or SQLite for "
                    "development).",
                    hint="Route django_idempotency to a supported database, or drop this alias.",
                    id="django_idempotency.E001",
                )
            )
        elif vendor == "mysql":
            messages.extend(_check_mysql(alias))
    return messages


def _check_mysql(alias: str) -> list[CheckMessage]:
    """What the MySQL dialect relies on, read from the settings (no connection is opened):
    naive datetimes in UTC (its clock is ``UTC_TIMESTAMP``) and a utf8mb4 connection."""
    connection = connections[alias]
    problems = []
    if connection.timezone_name != "UTC":
        problems.append(
            f"stores datetimes in {connection.timezone_name}, not UTC: set USE_TZ = True and "
            "leave the alias's TIME_ZONE unset (or 'UTC')"
        )
    charset = connection.get_connection_params().get("charset")
    if charset != "utf8mb4":
        problems.append(
            f"talks {charset}, not utf8mb4: characters outside the BMP (emoji) could not be "
            'stored; set OPTIONS = {"charset": "utf8mb4"}'
        )
    return [
        Error(
            f"Database {alias!r} (MySQL/MariaDB) {problem}.",
            hint="django-idempotency dates records by the database's UTC clock, byte for byte.",
            id="django_idempotency.E009",
        )
        for problem in problems
    ]


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every ``IDEMPOTENCY_*`` setting (``conf.Settings``), each judged by its ``SettingRule``."""
    messages: list[CheckMessage] = []
    for name, rule in SETTING_RULES.items():
        messages.extend(_check_setting(name, rule))
    if not getattr(settings, "USE_TZ", True):
        messages.append(
            Warning(
                "USE_TZ is False: record expiry is compared in local time.",
                id="django_idempotency.W003",
            )
        )
    return messages


@dataclass(frozen=True)
class SettingRule:
    """How one setting is checked at start-up.

    A value that is not of the setting's ``kind`` is ``django_idempotency.E002`` (judged on the
    value as set, because the typed property coerces: ``bool("false")`` is True, ``tuple("X-A")``
    is three names); a value of that kind that the layer cannot use is ``value_id``.
    """

    kind: str
    is_kind: Callable[[Any], bool]
    value_id: str | None = None
    usable_value: str = ""
    usable: Callable[[Any], bool] = lambda value: True
    level: Callable[..., CheckMessage] = Error
    secret: bool = False


def _check_setting(name: str, rule: SettingRule) -> list[CheckMessage]:
    setting = f"IDEMPOTENCY_{name}"
    if hasattr(settings, setting):
        raw = getattr(settings, setting)
        shown = "set" if rule.secret else repr(raw)
        if not rule.is_kind(raw):
            return [
                Error(
                    f"{setting} must be {rule.kind}; it is {shown}.",
                    id="django_idempotency.E002",
                )
            ]
    try:
        value = getattr(app_settings, name)
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. timedelta(seconds=nan)
        return [
            Error(
                f"{setting} must be {rule.kind}; reading it failed: {exc}",
                id="django_idempotency.E002",
            )
        ]
    if rule.value_id is None or rule.usable(value):
        return []
    shown = "set" if rule.secret else repr(getattr(settings, setting, value))
    return [rule.level(f"{setting} must be {rule.usable_value}; it is {shown}.", id=rule.value_id)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The longest lifetime: now plus it must still be a date (``datetime`` ends with year 9999).
_MAX_DURATION = timedelta(days=365 * 1000)


def _is_duration(value: Any) -> bool:
    if isinstance(value, timedelta):
        return abs(value) <= _MAX_DURATION
    return _is_number(value) and abs(value) <= _MAX_DURATION.total_seconds()  # nan: False


def _is_status(value: Any) -> bool:
    # Django refuses to send any other status: the answer would be a 500 at request time.
    return _is_whole(value) and 100 <= value <= 599


# RFC 9110 5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _is_header_name(value: Any) -> bool:
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def _is_collection(value: Any, item: Callable[[Any], bool]) -> bool:
    # A string is refused although it iterates: "X-A" would be three header names.
    return isinstance(value, (list, tuple, set, frozenset)) and all(item(v) for v in value)


def _optional(is_kind: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or is_kind(value)


def _positive(value: timedelta) -> bool:
    return value.total_seconds() > 0


# PostgreSQL's lock_timeout is a whole number of milliseconds up to 2**31 - 1.
_MAX_LOCK_TIMEOUT = (2**31 - 1) / 1000

_SECONDS = "a timedelta or a number of seconds, at most 1000 years"
_HEADER_NAMES = "a list of header names"

#: One rule per ``conf.Settings`` property, by its name without the ``IDEMPOTENCY_`` prefix.
#: A new setting needs a rule here (tests/test_checks.py fails without one).
SETTING_RULES: dict[str, SettingRule] = {
    "HEADER": SettingRule("a header name (a non-empty token, RFC 9110)", _is_header_name),
    "TTL": SettingRule(_SECONDS, _is_duration, "django_idempotency.E003", "positive", _positive),
    "REFERENCE_TTL": SettingRule(f"None or {_SECONDS}", _optional(_is_duration)),
    "LOCK_TIMEOUT": SettingRule(
        "a number of seconds",
        _is_number,
        "django_idempotency.E004",
        f"positive and at most {_MAX_LOCK_TIMEOUT:g} (PostgreSQL's limit)",
        lambda value: 0 < value <= _MAX_LOCK_TIMEOUT,
    ),
    "RETRY_AFTER": SettingRule(
        "a whole number of seconds",
        _is_whole,
        "django_idempotency.E020",
        "zero or positive (it is sent as Retry-After)",
        lambda value: value >= 0,
    ),
    "MISMATCH_STATUS": SettingRule(
        "an HTTP status code (an int from 100 to 599)",
        _is_status,
        "django_idempotency.W002",
        "422 (the IETF draft) or 409, which clients expect",
        lambda value: value in (409, 422),
        level=Warning,
    ),
    "RELEASE_STATUS_CODES": SettingRule(
        "a list of HTTP status codes (ints from 100 to 599)",
        lambda value: _is_collection(value, _is_status),
        "django_idempotency.E005",
        "a list of 4xx statuses only (every 5xx is released anyway)",
        lambda codes: all(400 <= code <= 499 for code in codes),
    ),
    "REFERENCE_STATUS_CODES": SettingRule(
        "a list of HTTP status codes (ints from 100 to 599)",
        lambda value: _is_collection(value, _is_status),
        "django_idempotency.E023",
        "a list of 2xx statuses (only a success can hold a reference)",
        lambda codes: all(200 <= code <= 299 for code in codes),
    ),
    "KEY_REQUIRED": SettingRule("True or False", lambda value: isinstance(value, bool)),
    "PRINCIPAL": SettingRule(
        f"one of {PRINCIPALS}", lambda value: isinstance(value, str) and value in PRINCIPALS
    ),
    "TASK_MAX_DELIVERIES": SettingRule(
        "a whole number",
        _is_whole,
        "django_idempotency.E024",
        "at least 1",
        lambda value: value >= 1,
    ),
    "NEVER_REPLAYED_HEADERS": SettingRule(
        _HEADER_NAMES, lambda value: _is_collection(value, _is_header_name)
    ),
    "MAX_STORED_BODY_SIZE": SettingRule(
        "None or a whole number of bytes",
        _optional(_is_whole),
        "django_idempotency.E006",
        "positive",
        lambda value: value > 0,
    ),
    "PROBLEM_TYPE_BASE": SettingRule("a string", lambda value: isinstance(value, str)),
    "RECORD_EVENTS": SettingRule("True or False", lambda value: isinstance(value, bool)),
    "MAX_EVENTS_PER_RECORD": SettingRule(
        "a whole number",
        _is_whole,
        "django_idempotency.E022",
        "zero or positive",
        lambda value: value >= 0,
    ),
    "DERIVED_KEY_SECRET": SettingRule(
        "None or a string", _optional(lambda value: isinstance(value, str)), secret=True
    ),
    "ISSUED_KEY_MAX_AGE": SettingRule(
        _SECONDS, _is_duration, "django_idempotency.E021", "positive", _positive
    ),
    "ISSUED_KEY_FIELD": SettingRule(
        "a form field name (a non-empty string)",
        lambda value: isinstance(value, str) and value != "",
    ),
    "OUTBOX_RELAY_AFTER": SettingRule(
        _SECONDS,
        _is_duration,
        "django_idempotency.E008",
        "zero or positive",
        lambda value: value.total_seconds() >= 0,
    ),
    "METRICS": SettingRule(
        "a list of strings",
        lambda value: _is_collection(value, lambda name: isinstance(name, str)),
        "django_idempotency.E025",
        f"a list of {sorted(METRICS_EXPORTERS)} or dotted paths of observer classes",
        lambda names: all(name in METRICS_EXPORTERS or "." in name for name in names),
    ),
}


register(*checks_metrics.TAGS)(checks_metrics.check_metrics_installed)
register(*checks_pooling.TAGS)(checks_pooling.check_pooling)
register(*checks_views.TAGS)(checks_views.check_hidden_creates)
register(*checks_views.TAGS)(checks_views.check_idempotent_without_mixin)
