"""Delivery counts of idempotent tasks: how often a message came back without finishing.

A run's claim commits with its outcome, so a worker that dies mid-run leaves no record; this
count, committed before the run, is what remembers the deaths. It is kept per (scope, key), the
record's identity, and removed by every delivery that ends in any way its process survives.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, models

if TYPE_CHECKING:
    from .models import TaskDelivery  # noqa: F401  (named in a string: QuerySet["TaskDelivery"])


class TaskDeliveryQuerySet(models.QuerySet["TaskDelivery"]):
    def count_delivery(
        self, database: str, *, scope: str, key: str, now: datetime, lifetime: timedelta
    ) -> int:
        """Count one more delivery of (scope, key) and commit it; how many there were so far.

        One ``INSERT ... ON CONFLICT DO UPDATE``: a count older than ``lifetime`` (left by a
        message the broker never brought back) starts again at 1. Outside a transaction it
        commits by itself, before the run: a run that kills its process cannot undo it.
        """
        connection = connections[database]
        meta = self.model._meta
        quote = connection.ops.quote_name
        table = quote(meta.db_table)
        fields = {name: _concrete(meta.get_field(name)) for name in _COLUMNS}
        column = {name: quote(str(field.column)) for name, field in fields.items()}
        expires = fields["expires_at"]
        sql = (
            f"INSERT INTO {table} ({column['scope']}, {column['key']}, {column['deliveries']}, "
            f"{column['expires_at']}) VALUES (%s, %s, 1, %s) "
            f"ON CONFLICT ({column['scope']}, {column['key']}) DO UPDATE SET "
            f"{column['deliveries']} = CASE WHEN {table}.{column['expires_at']} <= %s THEN 1 "
            f"ELSE {table}.{column['deliveries']} + 1 END, "
            f"{column['expires_at']} = excluded.{column['expires_at']} "
            f"RETURNING {column['deliveries']}"
        )
        params = [
            scope,
            key,
            expires.get_db_prep_save(now + lifetime, connection),
            expires.get_db_prep_save(now, connection),
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return int(row[0])

    def forget(self, database: str, *, scope: str, key: str) -> None:
        """Remove the count: the delivery ended, and its process lived to say so."""
        self.using(database).filter(scope=scope, key=key).delete()

    def forget_quietly(self, database: str, *, scope: str, key: str) -> None:
        """``forget``, on a path that is already failing: a count left behind only makes a
        later give-up come sooner, so a database error here must not hide the first one."""
        with contextlib.suppress(DatabaseError):
            self.forget(database, scope=scope, key=key)


_COLUMNS = ("scope", "key", "deliveries", "expires_at")


def _concrete(field: models.Field[Any, Any] | models.ForeignObjectRel) -> models.Field[Any, Any]:
    if not isinstance(field, models.Field):  # pragma: no cover - every name here is a column
        raise TypeError(f"{field!r} is not a column")
    return field
