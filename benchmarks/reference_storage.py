"""Bytes per held reference: what a record stripped by the purge still costs on PostgreSQL.

    DATABASE_URL=postgres://.../db python benchmarks/reference_storage.py [--rows 200000]

Needs a database migrated with django_idempotency (``manage.py migrate``). Works on a temporary
copy of the record table (same columns and indexes), so nothing of the real table is touched.
Fills it with held rows shaped like real ones (a user scope, a UUID key, an order reference, a
201 status, no body), then with the same rows still carrying a 1 KiB response, and prints the
table and index bytes per row of each.
"""

from __future__ import annotations

import argparse
import os

import psycopg

TABLE = "django_idempotency_idempotencyrecord"

FILL = """
INSERT INTO held_copy (scope, key, fingerprint, reference, requested_reference, state,
    request_method, request_path, response_status, response_headers, response_body,
    created_at, completed_at, expires_at, reference_expires_at, replay_count, conflict_count)
SELECT 'payment-list|auth.user:' || (n %% 100000), gen_random_uuid()::text,
    md5(n::text) || md5((n + 1)::text), 'order:' || n, 'order:' || n, %(state)s,
    'POST', '/api/payments/', 201, %(headers)s::jsonb, %(body)s,
    now() - interval '2 days', now() - interval '2 days', now() - interval '1 day', NULL, 0, 0
FROM generate_series(1, %(rows)s) AS n
"""

SIZES = """
SELECT pg_table_size('held_copy'), pg_indexes_size('held_copy'), count(*) FROM held_copy
"""


def measure(connection: psycopg.Connection, rows: int, *, stripped: bool) -> tuple[float, float]:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS held_copy")
        cursor.execute(f"CREATE TEMP TABLE held_copy (LIKE {TABLE} INCLUDING ALL)")
        headers = "[]" if stripped else '[["Content-Type", "application/json"]]'
        body = b"" if stripped else b"x" * 1024
        state = "held" if stripped else "completed"
        cursor.execute(FILL, {"rows": rows, "headers": headers, "body": body, "state": state})
        cursor.execute("ANALYZE held_copy")
        cursor.execute(SIZES)
        table, indexes, count = cursor.fetchone()  # type: ignore[misc]
        cursor.execute("DROP TABLE held_copy")
    return table / count, indexes / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
        for label, stripped in (("held (stripped)", True), ("completed, 1 KiB body", False)):
            table, indexes = measure(connection, rows, stripped=stripped)
            print(
                f"{label:24} {table:7.0f} B table + {indexes:6.0f} B indexes "
                f"= {table + indexes:7.0f} B per row ({rows} rows)"
            )


if __name__ == "__main__":
    main()
