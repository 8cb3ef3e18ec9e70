"""Indexes for the admin's filters and searches, built without blocking writes on PostgreSQL."""

from typing import Any

from django.db import migrations, models


class AddIndexWithoutLocking(migrations.AddIndex):
    """``AddIndex``, but ``CREATE INDEX CONCURRENTLY`` on PostgreSQL.

    The store is written by every keyed request; a plain CREATE INDEX would hold those writes
    for as long as it reads a table of millions of rows. Elsewhere it is a plain AddIndex.
    """

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            # IF NOT EXISTS: a concurrent build cut short leaves an index to build again.
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.index.name}")
            schema_editor.execute(self.index.create_sql(model, schema_editor, concurrently=True))

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {self.index.name}")


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("django_idempotency", "0003_reference_hold"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="idempotencyevent",
            index=models.Index(fields=["kind", "id"], name="idempotency_event_kind_idx"),
        ),
        AddIndexWithoutLocking(
            model_name="idempotencyevent",
            index=models.Index(
                condition=models.Q(("record__isnull", True)),
                fields=["scope", "key"],
                name="idempotency_event_unlinked_idx",
            ),
        ),
        AddIndexWithoutLocking(
            model_name="idempotencyrecord",
            index=models.Index(fields=["key"], name="idempotency_key_idx"),
        ),
        AddIndexWithoutLocking(
            model_name="idempotencyrecord",
            index=models.Index(
                condition=models.Q(("requested_reference__isnull", False)),
                fields=["requested_reference"],
                name="idempotency_req_reference_idx",
            ),
        ),
        AddIndexWithoutLocking(
            model_name="idempotencyrecord",
            index=models.Index(
                condition=models.Q(("conflict_count__gt", 0)),
                fields=["id"],
                name="idempotency_refused_idx",
            ),
        ),
        AddIndexWithoutLocking(
            model_name="idempotencyrecord",
            index=models.Index(
                condition=models.Q(("response_status__gte", 400)),
                fields=["id"],
                name="idempotency_error_idx",
            ),
        ),
    ]
