"""The names both dialects' statements use, taken from the models' ``_meta``.

Formatted into each statement once, when its dialect module is imported, as Django's own
backends build their SQL from ``_meta``: the tables, and the record's columns in the model's
order (the store rebuilds a record from a row of them). PostgreSQL and SQLite quote alike.

So every statement is built once per process: building the SQL for each request cost more than
sending it (the hot-path work of issue 14, CHANGELOG "Faster hot path").
"""

from __future__ import annotations

from ...models import IdempotencyEvent, IdempotencyRecord


def _quoted(name: str | None) -> str:
    return f'"{name}"'


NAMES = {
    "records": _quoted(IdempotencyRecord._meta.db_table),
    "events": _quoted(IdempotencyEvent._meta.db_table),
    "record_columns": ", ".join(_quoted(f.column) for f in IdempotencyRecord._meta.concrete_fields),
}


def statement(sql: str) -> str:
    """``sql`` with the names filled in, on one line (as logs and the libpq trace show it)."""
    return " ".join(sql.split()).format(**NAMES)
