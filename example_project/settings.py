"""Settings of the example project: SQLite by default, any database through DATABASE_URL."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_idempotency",
    "example_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],  # the landing page at /
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # MariaDB/MySQL (DATABASE_URL=mysql://...): characters outside the BMP need utf8mb4 on the
    # wire (Django before 5.2 talks utf8mb3); ?isolation_level=... in the URL is kept.
    DATABASES["default"]["OPTIONS"] = {
        "charset": "utf8mb4",
        **DATABASES["default"].get("OPTIONS", {}),
    }

# The fake payment gateway and carrier are "external": their own connection to the same
# database, so what they record survives our rollback (example_project/shop/external.py).
# EXAMPLE_EXTERNAL_DATABASE_URL: their own route to it, e.g. around a pooler the app goes through.
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    _url = os.environ.get("EXAMPLE_EXTERNAL_DATABASE_URL")
    _external = dj_database_url.parse(_url) if _url else DATABASES["default"]
    DATABASES["external"] = {**_external, "TEST": {"MIRROR": "default"}}

# The demo runs on SQLite on purpose; the warning is for production settings.
SILENCED_SYSTEM_CHECKS = ["django_idempotency.W001"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
STATIC_URL = "static/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "django_idempotency.drf.problem_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # The OpenAPI schema at /api/schema/ documents the Idempotency-Key header and its answers.
    "DEFAULT_SCHEMA_CLASS": "django_idempotency.drf.schema.IdempotentAutoSchema",
}

# The HTML checkout: log in, then back to the form.
LOGIN_REDIRECT_URL = "/shop/checkout/"

SPECTACULAR_SETTINGS = {"TITLE": "django-idempotency example shop", "VERSION": "1.0.0"}

# Seconds a stored response is replayed; the soak (tests/soak/) shortens it to see keys expire.
IDEMPOTENCY_TTL = float(os.environ.get("IDEMPOTENCY_TTL", 24 * 3600))
# Seconds an issued key may start an operation (a retry of one it started always replays).
IDEMPOTENCY_ISSUED_KEY_MAX_AGE = float(os.environ.get("IDEMPOTENCY_ISSUED_KEY_MAX_AGE", 24 * 3600))
# Metrics (docs/metrics.md), scraped at /metrics: on when prometheus_client is installed;
# EXAMPLE_METRICS="prometheus,opentelemetry" or "" chooses.
IDEMPOTENCY_METRICS = [
    name
    for name in os.environ.get(
        "EXAMPLE_METRICS", "prometheus" if find_spec("prometheus_client") else ""
    ).split(",")
    if name
]
# Celery (example_project/celery.py): at least once, made exactly once by IdempotentTask.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("EXAMPLE_CELERY_QUEUE", "celery")
# Acknowledge after the run, and redeliver when the worker (or its pool process) dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Redis and SQS redeliver a task still unacknowledged after this long: above the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The package's tasks (example_project/celery.py autodiscovers only the shop's): the outbox relay
# sends what the ship action wrote but could not send after its commit (docs/side-effects.md);
# the purge deletes expired keys. Schedules in seconds; a relay run that could not start in
# time is dropped, the next one does its work.
CELERY_IMPORTS = ["django_idempotency.celery.beat"]
CELERY_BEAT_SCHEDULE = {
    "idempotency-relay-outbox": {
        "task": "django_idempotency.relay_outbox",
        "schedule": 30.0,
        "options": {"expires": 30},
    },
    "idempotency-purge": {
        "task": "django_idempotency.purge_expired",
        "schedule": 15 * 60.0,
        "kwargs": {"batch_size": 1000},
    },
}
