"""Admin changelists that stay fast on tables of millions of rows.

Django's changelist counts every page (``COUNT(*)`` over the whole filtered table), lets any
column be sorted by a crafted ``?o=`` and lists every row when it believes there are few. Here a
count is exact only while it is small (a ``LIMIT``-ed count); past that it is PostgreSQL's own
estimate for the query (``EXPLAIN``), the pages offered are capped, and only indexed columns
sort.
"""

from __future__ import annotations

import json
from functools import cached_property
from math import ceil
from typing import Any, cast

from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet

#: Up to this many rows a count is exact; beyond, an estimate.
EXACT_COUNT_LIMIT = 1000
#: Pages offered; a deeper OFFSET reads every row before it. Filter or search to go further.
MAX_PAGES = 100


def count_rows(queryset: QuerySet[Any], exact_up_to: int = EXACT_COUNT_LIMIT) -> tuple[int, bool]:
    """``(count, estimated)``: exact up to ``exact_up_to`` rows; above that PostgreSQL's
    estimate for the query (never less than what was counted). Other databases count exactly:
    they serve development, not tables of millions."""
    exact: int = queryset.order_by()[: exact_up_to + 1].count()
    if exact <= exact_up_to:
        return exact, False
    estimate = planner_estimate(queryset)
    if estimate is None:
        return queryset.count(), False
    return max(exact, estimate), True


def approximate_count(queryset: QuerySet[Any], exact_up_to: int = EXACT_COUNT_LIMIT) -> int:
    return count_rows(queryset, exact_up_to)[0]


def planner_estimate(queryset: QuerySet[Any]) -> int | None:
    """Rows PostgreSQL's planner expects the query to return (from its statistics, instant)."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str | bytes):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):  # type: ignore[type-arg]
    """A paginator whose count never scans the table and whose page count is capped."""

    @cached_property
    def _counted(self) -> tuple[int, bool]:
        return count_rows(cast("QuerySet[Any]", self.object_list))

    @property
    def count(self) -> int:
        return self._counted[0]

    @property
    def estimated(self) -> bool:
        return self._counted[1]

    @cached_property
    def num_pages(self) -> int:
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        hits = max(1, self.count - self.orphans)
        return min(ceil(hits / self.per_page), MAX_PAGES)


class IndexedChangeList(ChangeList):
    """A changelist that sorts only by ``sortable_by`` columns, however ``?o=`` is crafted.

    ``ModelAdmin.default_orderings`` maps a filter parameter to the ordering an index serves
    while that filter is in use (and no column is chosen).
    """

    def get_ordering(self, request: Any, queryset: QuerySet[Any]) -> list[Any]:
        if ORDER_VAR in self.params:
            allowed = set(self.sortable_by or ())
            kept = []
            for part in str(self.params[ORDER_VAR]).split("."):
                index = part.rpartition("-")[2]
                if (
                    index.isascii()
                    and index.isdigit()
                    and int(index) < len(self.list_display)
                    and self.list_display[int(index)] in allowed
                ):
                    kept.append(part)
            if kept:
                self.params[ORDER_VAR] = ".".join(kept)
            else:
                del self.params[ORDER_VAR]
        if ORDER_VAR not in self.params:
            for parameter, ordering in getattr(self.model_admin, "default_orderings", {}).items():
                if parameter in self.params:
                    return list(ordering)
        return list(super().get_ordering(request, queryset))
