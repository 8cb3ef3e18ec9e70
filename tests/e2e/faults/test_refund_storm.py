"""The refund action (``@idempotent`` on a custom action) under a storm across two app
servers: copies of one key and new keys for one payment, all at once; one refund per payment."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg
import pytest
import requests

from .conftest import Launch
from .figures import E2E, measure
from .harness import (
    Tally,
    fire_together,
    in_flight_records,
    is_problem,
    is_replayed,
    json_id,
    post,
    rows_by,
    stored_server_errors,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PAYMENTS, SAME_KEY_COPIES, NEW_KEYS, OTHER_AMOUNT_KEYS = 10, 4, 4, 2


def test_refund_storm_across_two_app_servers(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    servers = [launch(e2e_database_url, name=f"app-{n}", delay_ms=200) for n in (1, 2)]
    urls = [s.url for s in servers]
    with measure(
        "Refund storm across two app servers",
        section=E2E,
        what=f"{PAYMENTS} payments, each refunded at once by {SAME_KEY_COPIES} copies of one "
        f"key, {NEW_KEYS} new keys with the same amount and {OTHER_AMOUNT_KEYS} with another "
        "(POST /api/payments/{id}/refund/, an @idempotent action), spread over two gunicorn "
        "instances, with a 200 ms gateway: one refund per payment.",
    ) as sheet:
        payment_ids = []
        for n in range(PAYMENTS):
            order = post(urls[0], e2e_token, "/api/orders/", {"item": "x", "quantity": 1}, f"o{n}")
            assert order.status_code == 201, order.text
            body = {"order": json_id(order), "amount": "40.00"}
            payment = post(urls[1], e2e_token, "/api/payments/", body, f"p{n}")
            assert payment.status_code == 201, payment.text
            payment_ids.append(json_id(payment))

        fired: list[tuple[int, dict[str, Any], str, str]] = []
        for payment in payment_ids:
            keys = [f"refund-{payment}"] * SAME_KEY_COPIES
            keys += [f"refund-{payment}-new-{n}" for n in range(NEW_KEYS + OTHER_AMOUNT_KEYS)]
            for n, key in enumerate(keys):
                amount = "10.00" if n < SAME_KEY_COPIES + NEW_KEYS else f"{11 + n}.00"
                fired.append((payment, {"amount": amount}, key, urls[n % len(urls)]))
        tally = Tally()

        def send(payment: int, body: dict[str, Any], key: str, url: str) -> requests.Response:
            response = post(url, e2e_token, f"/api/payments/{payment}/refund/", body, key)
            tally.saw(response)
            return response

        answers = fire_together(
            [lambda p=p, b=b, k=k, u=u: send(p, b, k, u) for p, b, k, u in fired]
        )

        with psycopg.connect(e2e_database_url, autocommit=True) as conn:
            refunds = rows_by(
                conn, "SELECT payment_id, count(*) FROM shop_refund GROUP BY payment_id"
            )
            sheet.stuck_records = in_flight_records(conn)
            stored_errors = stored_server_errors(conn)
        sheet.requests += tally.requests + 2 * PAYMENTS
        sheet.operations += PAYMENTS
        sheet.lost += sum(1 for payment in payment_ids if refunds.get(payment, 0) == 0)
        sheet.duplicated += sum(max(0, count - 1) for count in refunds.values())
        sheet.server_errors += tally.server_errors
        sheet.unclean_server_errors += tally.unclean_server_errors
        sheet.notes["answers"] = dict(sorted(tally.statuses.items()))

        by_payment: dict[int, list[requests.Response]] = defaultdict(list)
        for (payment, _, _, _), response in zip(fired, answers, strict=True):
            by_payment[payment].append(response)
        for responses in by_payment.values():
            created = [r for r in responses if r.status_code == 201]
            assert created, [r.status_code for r in responses]
            assert sum(not is_replayed(r) for r in created) == 1
            assert {r.content for r in created} == {created[0].content}
            for response in responses:
                if response.status_code != 201:
                    assert response.status_code == 409, response.text
                    assert is_problem(response), response.text
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
        assert stored_errors == 0
        assert tally.server_errors == 0, tally.statuses
