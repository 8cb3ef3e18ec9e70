"""The names the dialects' statements use, taken from the models' ``_meta``.

Formatted into each statement once, when its dialect module is imported, as Django's own
backends build their SQL from ``_meta``: the tables, and the record's columns in the model's
order (the store rebuilds a record from a row of them). PostgreSQL and SQLite quote names with
double quotes, MySQL and MariaDB with backticks (``ANSI_QUOTES`` is not assumed).

So every statement is built once per process: building the SQL for each request cost more than
sending it (the hot-path work of issue 14, CHANGELOG "Faster hot path").
"""

from __future__ import annotations

from ...models import IdempotencyEvent, IdempotencyRecord


def _names(quote: str) -> dict[str, str]:
    def quoted(name: str | None) -> str:
        return f"{quote}{name}{quote}"

    return {
        "records": quoted(IdempotencyRecord._meta.db_table),
        "events": quoted(IdempotencyEvent._meta.db_table),
        "record_columns": ", ".join(
            quoted(f.column) for f in IdempotencyRecord._meta.concrete_fields
        ),
    }


NAMES = _names('"')
BACKTICK_NAMES = _names("`")


def statement(sql: str, names: dict[str, str] = NAMES) -> str:
    """``sql`` with the names filled in, on one line (as logs and the libpq trace show it)."""
    return " ".join(sql.split()).format(**names)
