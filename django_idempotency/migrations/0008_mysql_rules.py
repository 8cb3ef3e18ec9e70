"""MariaDB and MySQL: the partial unique indexes' rules, built the way InnoDB can.

InnoDB has no partial index: Django leaves a conditional ``UniqueConstraint`` out on MySQL
(``models.W036`` says so). On MySQL and MariaDB only, this migration
builds what they would have guaranteed; the models' state, and PostgreSQL's and SQLite's
schemas, are unchanged:

- unique (scope, key) where state <> 'held': a stored generated column,
  ``idempotency_live_key``, that is the key unless the row is held and NULL then, and a unique
  index on (scope, it): NULLs never collide;
- unique (scope, reference) where reference is not null: a plain unique index, since a NULL
  reference never collides anyway.

Django builds the partial ``Index``es (the admin's) on MySQL without their condition
(``models.W037``), whole indexes on the same columns. That serves three of them; the two on
``id`` alone (conflicts, error responses) would only duplicate the primary key and mislead the
optimiser into reaching a row by ``id = ...`` through them, a range that locks its neighbours.
They are rebuilt on (the condition's column, id), under the same names.

And the text columns of the store's tables compare byte for byte (utf8mb4, a binary collation
without trailing-space padding): under the server's usual case- and accent-insensitive
collation, the keys ``abc`` and ``ABC`` (or ``abc`` and ``abc ``) would be one key, a false
match. The conversion rebuilds the tables; no earlier release ran on MySQL, so they are new.
"""

from typing import Any

from django.db import migrations

# The column the MySQL dialect (core/store/mysql.py) looks keys up by.
LIVE_KEY = "idempotency_live_key"

TABLES = ("idempotencyrecord", "idempotencyevent", "taskdelivery", "outboxmessage")
# The partial indexes on ``id`` and the column of their condition.
ON_ID = {"idempotency_refused_idx": "conflict_count", "idempotency_error_idx": "response_status"}


def _on_mysql(schema_editor: Any) -> bool:
    return bool(schema_editor.connection.vendor == "mysql")


def _table(apps: Any, model: str, schema_editor: Any) -> str:
    db_table = apps.get_model("django_idempotency", model)._meta.db_table
    return str(schema_editor.quote_name(db_table))


def forwards(apps: Any, schema_editor: Any) -> None:
    if not _on_mysql(schema_editor):
        return
    # MariaDB's utf8mb4_bin pads trailing spaces; its nopad twin and MySQL 8's 0900_bin do not.
    collation = (
        "utf8mb4_nopad_bin" if schema_editor.connection.mysql_is_mariadb else "utf8mb4_0900_bin"
    )
    execute = schema_editor.execute
    for model in TABLES:
        table = _table(apps, model, schema_editor)
        execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
    records = _table(apps, "idempotencyrecord", schema_editor)
    execute(
        f"ALTER TABLE {records} ADD COLUMN `{LIVE_KEY}` varchar(255) "
        f"CHARACTER SET utf8mb4 COLLATE {collation} "
        "AS (CASE WHEN `state` <> 'held' THEN `key` END) STORED"
    )
    execute(
        f"CREATE UNIQUE INDEX `idempotency_scope_key_uniq` ON {records} (`scope`, `{LIVE_KEY}`)"
    )
    execute(
        f"CREATE UNIQUE INDEX `idempotency_scope_reference_uniq` "
        f"ON {records} (`scope`, `reference`)"
    )
    for name, column in ON_ID.items():
        execute(f"DROP INDEX `{name}` ON {records}")
        execute(f"CREATE INDEX `{name}` ON {records} (`{column}`, `id`)")


def backwards(apps: Any, schema_editor: Any) -> None:
    if not _on_mysql(schema_editor):
        return
    records = _table(apps, "idempotencyrecord", schema_editor)
    execute = schema_editor.execute
    for name in ON_ID:
        execute(f"DROP INDEX `{name}` ON {records}")
        execute(f"CREATE INDEX `{name}` ON {records} (`id`)")
    execute(f"DROP INDEX `idempotency_scope_reference_uniq` ON {records}")
    execute(f"DROP INDEX `idempotency_scope_key_uniq` ON {records}")
    execute(f"ALTER TABLE {records} DROP COLUMN `{LIVE_KEY}`")


class Migration(migrations.Migration):
    dependencies = [
        ("django_idempotency", "0007_task_deliveries"),
    ]

    operations = [
        # DDL: MySQL commits each statement itself, so no transaction around them.
        migrations.RunPython(forwards, backwards, atomic=False, elidable=False),
    ]
