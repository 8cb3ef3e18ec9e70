#!/usr/bin/env python3
"""Time every admin page and filter of django-idempotency on a big store (run by hand).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mydb .venv/bin/python benchmarks/admin.py
    ... benchmarks/admin.py --records 10000000 --events 2000000   # the figures in docs/operating.md
    ... benchmarks/admin.py --records 100000 --events 20000       # a quick look

Migrates the database DATABASE_URL names (PostgreSQL only; use a scratch one: the tables are
refilled), fills it with one ``generate_series`` INSERT per table unless it already holds
exactly that many rows, and requests each page through Django's test client as a superuser:
once cold, then ``--repeat`` times, printing the median and the worst, the time spent in the
database, and the ratio to a baseline timed in the same run (the admin's own user list, one
row: what any admin page costs on this machine). Every page's database time must stay under
``--budget`` milliseconds (300 by default) however many rows there are; the script exits 1
when one does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

# The store's shape: one record in RECORDS_PER_SCOPE scopes, a quarter second apart (10M records
# span 29 days, so most are expired under a one-day TTL); a share of them replayed, refused,
# holding a reference or answered with an error.
FILL_RECORDS = """
INSERT INTO django_idempotency_idempotencyrecord (
    id, scope, key, fingerprint, reference, requested_reference, state, request_method,
    request_path, response_status, response_headers, response_body, created_at, completed_at,
    expires_at, last_seen_at, replay_count, conflict_count)
SELECT i,
       'order-list|auth.user:' || (i %% 5000),
       'key-' || i,
       md5(i::text) || md5((-i)::text),
       CASE WHEN i %% 2 = 0 AND (i %% 100) NOT IN (2, 4) THEN 'order:' || i END,
       CASE WHEN i %% 2 = 0 THEN 'order:' || i END,
       'completed', 'POST', '/api/orders/',
       CASE WHEN i %% 1000 = 7 THEN 503 WHEN i %% 100 IN (2, 4) THEN 422 ELSE 201 END,
       '[["Content-Type", "application/json"]]'::jsonb,
       convert_to('{"id": ' || i || ', "amount": "10.00"}', 'UTF8'),
       created, created, created + interval '1 day',
       CASE WHEN i %% 10 = 0 THEN created + interval '5 seconds' END,
       CASE WHEN i %% 10 = 0 THEN 1 ELSE 0 END,
       CASE WHEN i %% 997 = 0 THEN 1 ELSE 0 END
FROM (SELECT i, now() - (%(records)s - i) * interval '250 milliseconds' AS created
      FROM generate_series(1, %(records)s::bigint) AS i) AS s
"""

# Events: per record id r = i * step, mostly replays linked to it; one in 33 an in-flight
# refusal with no link (the scope and key of r), one in 20 a mismatch, one in 50 a reference
# conflict.
FILL_EVENTS = """
INSERT INTO django_idempotency_idempotencyevent (
    id, at, kind, scope, key, reference, fingerprint, record_id, expires_at)
SELECT i, created + interval '5 seconds',
       CASE WHEN i %% 33 = 0 THEN 'in_flight' WHEN i %% 20 = 0 THEN 'mismatch'
            WHEN i %% 50 = 0 THEN 'reference' ELSE 'replayed' END,
       'order-list|auth.user:' || (r %% 5000),
       CASE WHEN i %% 50 = 0 THEN 'other-' || i ELSE 'key-' || r END,
       CASE WHEN r %% 2 = 0 THEN 'order:' || r END,
       md5(r::text) || md5((-r)::text),
       CASE WHEN i %% 33 = 0 OR i %% 50 = 0 THEN NULL ELSE r END,
       created + interval '1 day'
FROM (SELECT i, r, now() - (%(records)s - r) * interval '250 milliseconds' AS created
      FROM (SELECT i, greatest(1, i * %(records)s / %(events)s) AS r
            FROM generate_series(1, %(events)s::bigint) AS i) AS picked) AS s
"""


def fill(records: int, events: int) -> None:
    from django.db import connection

    from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

    if IdempotencyRecord.objects.count() == records and IdempotencyEvent.objects.count() == events:
        print(f"already filled: {records} records, {events} events")
        return
    params = {"records": records, "events": events}
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute(
            "TRUNCATE django_idempotency_idempotencyevent, django_idempotency_idempotencyrecord"
        )
        for name, sql in (("records", FILL_RECORDS), ("events", FILL_EVENTS)):
            started = time.monotonic()
            cursor.execute(sql, params)
            print(f"filled {params[name]} {name} in {time.monotonic() - started:.0f}s", flush=True)
        for table in ("idempotencyrecord", "idempotencyevent"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('django_idempotency_{table}', 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM django_idempotency_{table}))"
            )
    started = time.monotonic()
    with connection.cursor() as cursor:
        for table in ("idempotencyrecord", "idempotencyevent"):
            cursor.execute(f"VACUUM ANALYZE django_idempotency_{table}")
    print(f"vacuum analyze in {time.monotonic() - started:.0f}s", flush=True)


def pages(records: int, events: int) -> list[tuple[str, str]]:
    """(label, path) for every changelist, filter value, search, sort and detail page."""
    base = "/admin/django_idempotency/"
    rec = f"{base}idempotencyrecord/"
    ev = f"{base}idempotencyevent/"
    mid = records // 2 * 2  # an even id: it holds a reference and has events
    in_flight_record = max(1, 33 * records // events)  # event 33 is an in-flight refusal
    listed = [
        ("records", rec),
        ("records page 2", f"{rec}?p=2"),
        ("records last page offered", f"{rec}?p=100"),
        ("records refused", f"{rec}?conflicted=yes"),
        ("records expired", f"{rec}?expired=yes"),
        ("records live", f"{rec}?expired=no"),
        ("records 4xx responses", f"{rec}?status=4xx"),
        ("records 5xx responses", f"{rec}?status=5xx"),
        ("records search key", f"{rec}?q=key-{mid}"),
        ("records search reference", f"{rec}?q=order:{mid}"),
        ("records search miss", f"{rec}?q=nothing-like-it"),
        # Column 0 is the action checkbox: 6 is "created" (by id), 7 "expires".
        ("records sort created, oldest first", f"{rec}?o=6"),
        ("records sort expires", f"{rec}?o=7"),
        ("records sort expires, descending", f"{rec}?o=-7"),
        ("records crafted sort by replays", f"{rec}?o=8.9"),
        ("records crafted lookup", f"{rec}?replay_count__gt=0"),
        ("records facets", f"{rec}?_facets=1"),
        ("records show all", f"{rec}?all="),
        ("record detail", f"{rec}{mid}/change/"),
        ("record detail, in-flight refusal", f"{rec}{in_flight_record}/change/"),
        ("purge preview", f"{rec}purge/"),
        ("events", ev),
        ("events page 2", f"{ev}?p=2"),
        ("events last page offered", f"{ev}?p=100"),
    ]
    for kind in ("replayed", "mismatch", "in_flight", "reference"):
        listed.append((f"events kind={kind}", f"{ev}?kind__exact={kind}"))
    listed += [
        ("events about a record", f"{ev}?about={mid}"),
        ("events about a record, in-flight refusal", f"{ev}?about={in_flight_record}"),
        ("events about a purged id", f"{ev}?about={records + 10}"),
        ("events facets", f"{ev}?_facets=1"),
        ("event detail", f"{ev}{events // 2}/change/"),
    ]
    return listed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="warm requests per page")
    parser.add_argument("--budget", type=float, default=300.0, help="milliseconds per page")
    parser.add_argument("--fill-only", action="store_true", help="fill, then stop")
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        parser.error("needs PostgreSQL: set DATABASE_URL to a scratch database")
    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    fill(options.records, options.events)
    if options.fill_only:
        return 0
    user, _ = get_user_model().objects.get_or_create(
        username="admin-bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)

    print(
        f"\n{options.records:,} records, {options.events:,} events. Per page, in ms: the first "
        f"request, then the median and worst of {options.repeat}; 'sql' is the median time in "
        "the database, the rest is Django rendering the page. Baseline: the admin's own user "
        "list (one row), timed in the same run, for what any admin page costs on this machine."
    )
    header = f"{'page':<44} {'status':>6} {'first':>6} {'median':>7} {'worst':>6} {'sql':>5}"
    print(f"{header} {'x baseline':>10}")
    slow = []
    baseline = 0.0
    for label, url in [
        ("baseline: auth user list", "/admin/auth/user/"),
        *pages(options.records, options.events),
    ]:
        totals, sqls = [], []
        status = 0
        for _ in range(options.repeat + 1):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                totals.append((time.perf_counter() - started) * 1000)
            sqls.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
            status = response.status_code
        median = statistics.median(totals[1:])
        sql = statistics.median(sqls[1:])
        baseline = baseline or median
        print(
            f"{label:<44} {status:>6} {totals[0]:>6.0f} {median:>7.0f} {max(totals[1:]):>6.0f} "
            f"{sql:>5.0f} {median / baseline:>10.2f}",
            flush=True,
        )
        if status >= 500 or sql > options.budget:
            slow.append(label)
    if slow:
        print(f"\ndatabase time over {options.budget:.0f} ms, or failing: {', '.join(slow)}")
        return 1
    print(f"\nevery page's database time under {options.budget:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
