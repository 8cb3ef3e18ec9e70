"""The purge's statements on one batch of primary keys, each reaching only the rows it names.

A purge batch's rows are locked by its ``SELECT ... FOR UPDATE SKIP LOCKED``, and its writes
must touch those rows only: a statement that scanned the table would wait for the rows a live
request holds, which is what skipping them was for. PostgreSQL and SQLite look the keys up by
the primary key by themselves. MySQL's and MariaDB's optimisers scan a small table instead,
even ``FORCE INDEX (PRIMARY)`` (and in InnoDB a scanning DELETE or UPDATE waits for every
locked row it passes). So there the keys are a ``JSON_TABLE`` (MariaDB 10.6+, MySQL 8.0.4+)
joined first (``STRAIGHT_JOIN``) to the table, each row reached by its primary key alone.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connections, models


def delete_rows(model: type[models.Model], ids: list[int], alias: str, by: str = "pk") -> int:
    """Delete the rows of ``model`` whose ``by`` (the primary key, or another indexed column)
    is in ``ids``; how many went. On MySQL, by another column: that column's rows are read
    first (a plain read, which waits for nothing), then deleted by their primary keys."""
    if not ids:
        return 0
    connection = connections[alias]
    queryset: Any = model._default_manager.using(alias).filter(**{f"{by}__in": ids})
    if connection.vendor != "mysql":
        # One DELETE ... WHERE id IN (...): QuerySet.delete() would fall back to fetching every
        # row (response bodies included) as soon as any delete signal receiver is connected.
        return int(queryset._raw_delete(alias))
    if by != "pk":
        ids = list(queryset.values_list("pk", flat=True))
        if not ids:
            return 0
    table, pk = _names(connection, model)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE t FROM {_KEYS} STRAIGHT_JOIN {table} AS t ON t.{pk} = k.id", [_json(ids)]
        )
        return int(cursor.rowcount)


def update_rows(model: type[models.Model], ids: list[int], alias: str, **values: Any) -> int:
    """Set ``values`` on the rows of ``model`` whose primary keys are ``ids``; how many."""
    if not ids:
        return 0
    connection = connections[alias]
    if connection.vendor != "mysql":
        return int(model._default_manager.using(alias).filter(pk__in=ids).update(**values))
    table, pk = _names(connection, model)
    quote = connection.ops.quote_name
    assignments, params = [], []
    for name, value in values.items():
        field: Any = model._meta.get_field(name)
        assignments.append(f"t.{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_KEYS} STRAIGHT_JOIN {table} AS t ON t.{pk} = k.id "
            f"SET {', '.join(assignments)}",
            [_json(ids), *params],
        )
        return int(cursor.rowcount)


def _names(connection: Any, model: type[models.Model]) -> tuple[str, str]:
    quote = connection.ops.quote_name
    return quote(model._meta.db_table), quote(model._meta.pk.column)


# The batch's primary keys as a table (one parameter: their JSON list).
_KEYS = "JSON_TABLE(%s, '$[*]' COLUMNS (id BIGINT PATH '$')) AS k"


def _json(ids: list[int]) -> str:
    return json.dumps([int(pk) for pk in ids])
