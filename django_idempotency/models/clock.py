"""The clock that dates and judges the app's rows: PostgreSQL's own, else the app server's.

On PostgreSQL expiry, the purge's cutoff and the outbox's age are decided by the database's
clock, so app servers whose clocks disagree neither purge live records nor hurry the relay.
SQLite (development) has the app server's clock only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.utils import timezone


def database_now(alias: str) -> Any:
    """``Now()`` (the statement's time) on PostgreSQL; the app server's time elsewhere."""
    return Now() if connections[alias].vendor == "postgresql" else timezone.now()


def before(clock: Any, age: timedelta) -> Any:
    """``clock - age``, where ``clock`` is a datetime or the database's ``Now()``."""
    if isinstance(clock, datetime):
        return clock - age
    return ExpressionWrapper(
        clock - Value(age, output_field=DurationField()), output_field=DateTimeField()
    )
