"""A full restart of the app servers: the responses stored before it are replayed after it,
byte for byte, by any server, and nothing runs twice."""

from __future__ import annotations

import json

import psycopg
import pytest
import requests

from .conftest import Launch
from .figures import FAULTS, measure
from .harness import Tally, in_flight_records, is_replayed, post, scalar

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

ORDERS, PAYMENTS, NOTES = 20, 10, 5
# The headers a replay repeats (the rest, such as Date, belong to the moment of answering).
REPLAYED_HEADERS = ("Content-Type", "Location", "Content-Language", "ETag")


def snapshot(response: requests.Response) -> tuple[int, bytes, dict[str, str]]:
    headers = {
        name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers
    }
    return response.status_code, response.content, headers


def test_replays_after_a_full_restart_are_byte_identical(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    before = launch(e2e_database_url, name="before")
    operations: list[tuple[str, dict[str, object], str]] = []
    for n in range(ORDERS):
        operations.append(
            ("/api/orders/", {"item": f"restart {n}", "quantity": 1 + n % 4}, f"o-{n}")
        )
    tally = Tally()
    with measure(
        "Replays after a full server restart",
        section=FAULTS,
        what=f"{ORDERS} orders, {PAYMENTS} payments (one of them declined: a stored 402) and "
        f"{NOTES} notes on one gunicorn instance; the instance is stopped (SIGTERM to the "
        "master, by PID); two fresh instances replay every key.",
    ) as sheet:
        first: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        for path, body, key in operations:
            response = post(before.url, e2e_token, path, body, key)
            tally.saw(response)
            assert response.status_code == 201, response.text
            first[key] = snapshot(response)
        for n in range(PAYMENTS):
            order = json.loads(first[f"o-{n}"][1])["id"]
            amount = "20000.00" if n == 0 else "25.00"  # over the limit: declined, and stored
            operations.append(("/api/payments/", {"order": order, "amount": amount}, f"p-{n}"))
        for n in range(NOTES):
            operations.append(("/api/notes/", {"text": f"note {n}"}, f"n-{n}"))
        for path, body, key in operations[ORDERS:]:
            response = post(before.url, e2e_token, path, body, key)
            tally.saw(response)
            assert response.status_code in (201, 402), response.text
            first[key] = snapshot(response)

        with psycopg.connect(e2e_database_url, autocommit=True) as conn:
            counts_before = table_counts(conn)
        before.stop()
        assert before.process.poll() is not None
        sheet.faults_injected = 1
        after = [launch(e2e_database_url, name=f"after-{n}") for n in (1, 2)]

        mismatches = []
        for path, body, key in operations:
            for server in after:
                response = post(server.url, e2e_token, path, body, key)
                tally.saw(response)
                if not is_replayed(response) or snapshot(response) != first[key]:
                    mismatches.append((key, server.name, response.status_code))
        with psycopg.connect(e2e_database_url, autocommit=True) as conn:
            counts_after = table_counts(conn)
            sheet.stuck_records = in_flight_records(conn)
            replays = int(
                scalar(conn, "SELECT sum(replay_count) FROM django_idempotency_idempotencyrecord")
            )
        sheet.requests = tally.requests
        sheet.operations = len(operations)
        sheet.duplicated = sum(counts_after.values()) - sum(counts_before.values())
        sheet.notes["answers"] = dict(sorted(tally.statuses.items()))
        sheet.notes["replays that differed"] = len(mismatches)

        assert mismatches == []
        assert counts_after == counts_before
        assert replays == 2 * len(operations)
        assert sheet.stuck_records == 0


def table_counts(conn: psycopg.Connection[object]) -> dict[str, int]:
    return {
        table: int(scalar(conn, f"SELECT count(*) FROM {table}"))
        for table in ("shop_order", "shop_payment", "shop_note")
    }
