"""Every admin page reads through indexes: no query of a page scans, sorts or counts a whole table.

Timings prove nothing on a table of a thousand rows (benchmarks/admin.py times the pages at 10
million), but plans do: with sequential scans priced out, a query that still needs one, or that
sorts or counts every row, has no index to serve it and would read the whole table in production.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import django
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"django_idempotency_idempotencyrecord", "django_idempotency_idempotencyevent"}
RECORDS, EVENTS = 3000, 600
# A partial index holds only the rows it serves: scanning all of it reads no other row.
PARTIAL = {
    index.name
    for model in (IdempotencyRecord, IdempotencyEvent)
    for index in model._meta.indexes
    if index.condition is not None
}


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("admin_bench", ROOT / "benchmarks" / "admin.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


@pytest.fixture
def filled(admin_client: Client) -> Client:
    params = {"records": RECORDS, "events": EVENTS}
    with connection.cursor() as cursor:
        cursor.execute(BENCH.FILL_RECORDS, params)
        cursor.execute(BENCH.FILL_EVENTS, params)
        for table in TABLES:
            cursor.execute(f"ANALYZE {table}")
    return admin_client


def whole_table_reads(plan: dict[str, Any], above: tuple[str, ...] = ()) -> list[str]:
    """Scans of our tables that read every row: a Seq Scan, or an index scan with no condition
    that is not cut short by a Limit right above it (a Sort, Aggregate or Hash in between
    means every row is read first)."""
    found = []
    kind = plan["Node Type"]
    if plan.get("Relation Name") in TABLES:
        bounded = False
        for ancestor in reversed(above):
            if ancestor == "Limit":
                bounded = True
                break
            # An Incremental Sort keeps the Limit's bound (it sorts ties of the index order).
            if ancestor in {"Sort", "Aggregate", "Hash", "Materialize"}:
                break
        conditioned = plan.get("Index Name") in PARTIAL or any(
            key in plan for key in ("Index Cond", "Recheck Cond")
        )
        if kind == "Seq Scan" or (not conditioned and not bounded):
            found.append(f"{kind} on {plan['Relation Name']}")
    for child in plan.get("Plans", []):
        found += whole_table_reads(child, (*above, kind))
    return found


def plans_of(client: Client, url: str) -> list[tuple[str, list[str]]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    # A page past the end (the benchmark's page 100 of a small table) redirects with ?e=1.
    # Before Django 5.0 the admin has no facets: ``_facets`` is an unknown lookup there, refused
    # with a 400 before any query.
    facets_unknown = django.VERSION < (5, 0) and "_facets" in url
    assert response.status_code in ((400,) if facets_unknown else (200, 302)), url
    bad = []
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for query in queries.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT") or not any(t in sql for t in TABLES):
                continue
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            reads = whole_table_reads(plan[0]["Plan"])
            if reads:
                bad.append((sql, reads))
        cursor.execute("SET LOCAL enable_seqscan = on")
    return bad


def test_the_fill_gives_every_filter_rows(filled: Client) -> None:
    assert IdempotencyRecord.objects.count() == RECORDS
    assert IdempotencyEvent.objects.filter(kind="in_flight").exists()


PAGES = [page for page in BENCH.pages(RECORDS, EVENTS) if "crafted lookup" not in page[0]]


@pytest.mark.parametrize(("label", "url"), PAGES, ids=[label for label, _ in PAGES])
def test_no_admin_page_reads_a_whole_table(filled: Client, label: str, url: str) -> None:
    bad = plans_of(filled, url)
    assert not bad, f"{label}: " + "; ".join(f"{reads} in {sql[:300]}" for sql, reads in bad)
