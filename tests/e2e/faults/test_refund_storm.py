"""The refund action (``@idempotent`` on a custom action) under a storm across two app
servers: copies of one key and new keys for one payment, all at once; one refund per payment."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from .conftest import Launch
from .figures import E2E, measure
from .harness import Tally, fire_together, json_id, post
from .storms import one_effect_per_reference

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

PAYMENTS, SAME_KEY_COPIES, NEW_KEYS, OTHER_AMOUNT_KEYS = 10, 4, 4, 2
REFUNDS_PER_PAYMENT = "SELECT payment_id, count(*) FROM shop_refund GROUP BY payment_id"


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

        sheet.requests += 2 * PAYMENTS  # the orders and the payments refunded
        refunded = [(payment, r) for (payment, *_), r in zip(fired, answers, strict=True)]
        one_effect_per_reference(
            sheet,
            tally,
            e2e_database_url,
            effects=REFUNDS_PER_PAYMENT,
            references=payment_ids,
            answers=refunded,
        )
