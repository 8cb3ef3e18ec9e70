"""Settings of the benchmark project: PostgreSQL from BENCH_DATABASE_URL, token auth, lean stack.

The middleware stack is deliberately short (what a JSON API needs): a heavier stack would hide
the idempotency layer's cost inside everybody's fixed cost and flatter every ratio.
"""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "benchmark-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "rest_framework.authtoken",
    "django_idempotency",
    "drf_idempotency",
    "drf_idempotencykey",
    "rest_framework_idempotency_key",
    "benchproject",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Each competitor's middleware, confined to its own URL prefix so that it never sees the
    # other variants' requests (they all send an Idempotency-Key header).
    "benchproject.middleware.DrfIdempotencyOnItsPrefix",
    "benchproject.middleware.RestFrameworkIdempotencyKeyOnItsPrefix",
]

ROOT_URLCONF = "benchproject.urls"
WSGI_APPLICATION = "benchproject.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/idempotency_bench"
        ),
        # Persistent connections, as any production deployment has: reconnecting per request
        # would dominate every number.
        conn_max_age=600,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # A token lookup is one indexed SELECT: cheap auth, so password hashing hides nothing.
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

# django-idempotency: its defaults, as a user installs it.

# drf-idempotency (one dict setting): defaults, database backend.
IDEMPOTENCY = {"BACKEND": "drf_idempotency.backends.database.DatabaseBackend"}

# djangorestframework-idempotency-key reads this without a default.
IDEMPOTENCY_KEY_LOCK_TIMEOUT = 30

SILENCED_SYSTEM_CHECKS: list[str] = []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # A 409 or 422 is an expected answer in the storm; do not print one line per copy.
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
