"""Delivery counts of idempotent tasks: how often a message came back without finishing.

A run's claim commits with its outcome, so a worker that dies mid-run leaves no record; this
count, committed before the run, is what remembers the deaths. It is kept per (scope, key), the
record's identity, and removed by every delivery that ends in any way its process survives.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connections, models, transaction
from django.utils.translation import gettext_lazy as _


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
        if connection.vendor == "mysql":
            return self._count_delivery_mysql(
                database, scope=scope, key=key, now=now, lifetime=lifetime
            )
        # The table's name from the model, as Django's own backends take it; PostgreSQL and
        # SQLite both speak this statement.
        sql = " ".join(_COUNT_DELIVERY.split()).format(
            table=connection.ops.quote_name(self.model._meta.db_table)
        )
        expires: Any = self.model._meta.get_field("expires_at")
        params = {
            "scope": scope,
            "key": key,
            "expires_at": expires.get_db_prep_save(now + lifetime, connection),
            "now": expires.get_db_prep_save(now, connection),
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return int(row[0])

    def _count_delivery_mysql(
        self, database: str, *, scope: str, key: str, now: datetime, lifetime: timedelta
    ) -> int:
        """``count_delivery`` on MySQL and MariaDB: the upsert, then the count read back in the
        same transaction (MySQL has no ``RETURNING``), so a concurrent count cannot slip
        between them."""
        connection = connections[database]
        table = connection.ops.quote_name(self.model._meta.db_table)
        expires: Any = self.model._meta.get_field("expires_at")
        params = {
            "scope": scope,
            "key": key,
            "expires_at": expires.get_db_prep_save(now + lifetime, connection),
            "now": expires.get_db_prep_save(now, connection),
        }
        with transaction.atomic(using=database), connection.cursor() as cursor:
            cursor.execute(" ".join(_COUNT_DELIVERY_MYSQL.split()).format(table=table), params)
            cursor.execute(
                f"SELECT `deliveries` FROM {table} WHERE `scope` = %(scope)s AND `key` = %(key)s",
                params,
            )
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


_COUNT_DELIVERY = """
    INSERT INTO {table} ("scope", "key", "deliveries", "expires_at")
    VALUES (%(scope)s, %(key)s, 1, %(expires_at)s)
    ON CONFLICT ("scope", "key") DO UPDATE SET
        "deliveries" = CASE WHEN {table}."expires_at" <= %(now)s THEN 1
                            ELSE {table}."deliveries" + 1 END,
        "expires_at" = excluded."expires_at"
    RETURNING "deliveries"
"""


class TaskDelivery(models.Model):
    """How many deliveries of an idempotent task's message did not come back (``IdempotentTask``).

    Written before each run in a commit of its own and removed when the delivery ends in any
    way its worker survives, so what is left counts the deliveries that killed their worker.
    Past the task's limit the operation is stored as failed (see ``celery/tasks/deliveries.py``).
    """

    scope = models.CharField(
        _("scope"), max_length=255, help_text=_("The task's scope (celery:<task name>).")
    )
    key = models.CharField(_("key"), max_length=255, help_text=_("The task's idempotency key."))
    deliveries = models.PositiveIntegerField(
        _("deliveries"),
        default=1,
        help_text=_("Deliveries in a row that started the task and never reported back."),
    )
    expires_at = models.DateTimeField(
        _("expires"),
        help_text=_("After this the count starts again; the record it counts for is gone too."),
    )

    objects = TaskDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("task delivery count")
        verbose_name_plural = _("task delivery counts")
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_task_delivery_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope}): {self.deliveries}"


# MySQL evaluates the assignments left to right: ``deliveries`` still reads the old expiry.
_COUNT_DELIVERY_MYSQL = """
    INSERT INTO {table} (`scope`, `key`, `deliveries`, `expires_at`)
    VALUES (%(scope)s, %(key)s, 1, %(expires_at)s)
    ON DUPLICATE KEY UPDATE
        `deliveries` = CASE WHEN `expires_at` <= %(now)s THEN 1 ELSE `deliveries` + 1 END,
        `expires_at` = %(expires_at)s
"""
