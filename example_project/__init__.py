"""The example project. Its Celery app is loaded with Django, as Celery's Django guide does, so
``shared_task`` tasks and ``manage.py idempotency_relay_outbox`` use it."""

from .celery import app as celery_app

__all__ = ["celery_app"]
