"""Test settings: the example project's apps plus test-only views. DATABASE_URL picks the DB."""

from __future__ import annotations

import os
from importlib.util import find_spec

import dj_database_url

from example_project import settings as example

SECRET_KEY = "tests-not-secret"
SIMPLE_JWT = {"SIGNING_KEY": "tests-not-secret-" * 4}  # PyJWT warns below 32 bytes
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

# Without DRF (make test-nodrf) the example's DRF apps are left out; tests/urls.py likewise.
DRF_APPS = ("rest_framework", "rest_framework.authtoken", "drf_spectacular")
INSTALLED_APPS = [
    *(app for app in example.INSTALLED_APPS if find_spec("rest_framework") or app not in DRF_APPS),
    "tests.testapp",
]
MIDDLEWARE = example.MIDDLEWARE
TEMPLATES = example.TEMPLATES
REST_FRAMEWORK = example.REST_FRAMEWORK
ROOT_URLCONF = "tests.urls"


def _other_name(name: str) -> str:
    return name if name in ("", ":memory:") else f"{name}_other"


DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "sqlite:///:memory:"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # utf8mb4 on the wire and in the test databases; the isolation level under test:
    # IDEMPOTENCY_TEST_MYSQL_ISOLATION ("read committed", Django's default, or "repeatable
    # read", InnoDB's).
    DATABASES["default"]["OPTIONS"] = {
        "charset": "utf8mb4",
        "isolation_level": os.environ.get("IDEMPOTENCY_TEST_MYSQL_ISOLATION", "read committed"),
    }
    # The server's usual case-insensitive collation: migration 0008 must make the store exact.
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"}
# A second alias for the multi-database tests: same server, its own database.
DATABASES["other"] = {
    **DATABASES["default"],
    "NAME": _other_name(DATABASES["default"]["NAME"]),
    "TEST": dict(DATABASES["default"].get("TEST", {})),  # its own: conftest names each
}
DATABASE_ROUTERS = ["tests.routers.OtherDatabaseRouter"]

# E007/E030: tests/urls_drf.py routes misconfigured views on purpose
# (tests/operations/test_checks.py judges them with run_checks(), which ignores this list), so
# `manage.py migrate` in a test still runs.
SILENCED_SYSTEM_CHECKS = [
    "django_idempotency.W001",
    "django_idempotency.E007",
    "django_idempotency.E030",
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
# Fast hashing: the tests authenticate thousands of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
