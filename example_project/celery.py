"""The example's Celery app: ``celery -A example_project.celery:app worker``.

Configured from the ``CELERY_*`` Django settings; the broker comes from ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
