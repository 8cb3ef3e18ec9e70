"""The clock that dates and judges the app's rows: the database's own, else the app server's.

On PostgreSQL, MariaDB and MySQL expiry, the purge's cutoff and the outbox's age are decided by
the database's clock, so app servers whose clocks disagree neither purge live records nor hurry
the relay. SQLite (development) has the app server's clock only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Value
from django.db.models.functions import Now
from django.utils import timezone


class UtcNow(Now):
    """``Now()``, but in UTC on MySQL and MariaDB: ``CURRENT_TIMESTAMP`` there is in the
    session's ``time_zone``, while Django stores naive UTC (the check E009 holds it to UTC)."""

    def as_mysql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template="UTC_TIMESTAMP(6)", **extra_context)


def database_now(alias: str) -> Any:
    """The statement's time on PostgreSQL, MariaDB and MySQL; the app server's on SQLite."""
    return UtcNow() if connections[alias].vendor in ("postgresql", "mysql") else timezone.now()


def before(clock: Any, age: timedelta) -> Any:
    """``clock - age``, where ``clock`` is a datetime or the database's ``Now()``."""
    if isinstance(clock, datetime):
        return clock - age
    return ExpressionWrapper(
        clock - Value(age, output_field=DurationField()), output_field=DateTimeField()
    )
