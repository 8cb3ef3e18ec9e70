"""The two storms, run against any set of app servers: many copies of each key at once, and
many keys paying each order at once. Each fills in the test's sheet and asserts the promise,
with checks the other storms share."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import requests

from tests.databases import session

from .figures import Sheet
from .harness import (
    Tally,
    fill_in_sheet,
    fire_together,
    in_flight_records,
    is_problem,
    is_replayed,
    json_id,
    post,
    rows_by,
    scalar,
    stored_server_errors,
)

PAYMENTS_PER_ORDER = "SELECT order_id, count(*) FROM shop_payment GROUP BY order_id"


def duplicate_storm(
    sheet: Sheet, urls: list[str], token: str, database_url: str, *, keys: int, copies: int
) -> None:
    """``keys`` x ``copies`` simultaneous POSTs to /api/orders/, the copies of each key spread
    over ``urls``; then each key once more on every server. One order per key, every 201 of a
    key byte-identical, everything else a 409 problem with Retry-After."""
    names = [f"storm-{n}" for n in range(keys)]
    bodies = {
        key: {"item": f"item for {key}", "quantity": 1 + n % 3} for n, key in enumerate(names)
    }
    fired = [(key, urls[copy % len(urls)]) for key in names for copy in range(copies)]
    tally = Tally()

    def send(key: str, url: str) -> requests.Response | None:
        try:
            response = post(url, token, "/api/orders/", bodies[key], key)
        except requests.RequestException as exc:
            tally.saw(None, exc)
            return None
        tally.saw(response)
        return response

    answers = fire_together([lambda k=key, u=url: send(k, u) for key, url in fired])
    later = [(key, send(key, url)) for key in names for url in urls]

    by_key: dict[str, list[requests.Response | None]] = defaultdict(list)
    for (key, _), response in [
        *zip(fired, answers, strict=True),
        *[((k, ""), r) for k, r in later],
    ]:
        by_key[key].append(response)

    with session(database_url) as conn:
        rows = rows_by(conn, "SELECT item, count(*) FROM shop_order GROUP BY item")
        order_of = dict(conn.execute("SELECT item, id FROM shop_order").fetchall())
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
        records = scalar(conn, "SELECT count(*) FROM django_idempotency_idempotencyrecord")
    items = [bodies[key]["item"] for key in names]
    fill_in_sheet(sheet, tally, effects=rows, operations=items)

    assert tally.dropped == 0, tally.statuses
    for key, responses in by_key.items():
        answered = [r for r in responses if r is not None]
        created = [r for r in answered if r.status_code == 201]
        assert created, f"{key}: {[r.status_code for r in answered]}"
        first = created[0]
        assert sum(not is_replayed(r) for r in created) == 1, key
        for response in created:
            # The original's stored answer, byte for byte, whichever server answered.
            assert response.content == first.content, key
            assert response.headers["Location"] == first.headers["Location"]
            assert response.headers["Content-Type"] == first.headers["Content-Type"]
        for response in answered:
            if response.status_code != 201:
                assert response.status_code == 409, (key, response.status_code, response.text)
                assert is_problem(response), response.text
                assert int(response.headers["Retry-After"]) >= 1
        # The last ones (one per server, after the storm) are plain replays.
        assert all(is_replayed(r) for r in answered[-len(urls) :]), key
        assert rows[bodies[key]["item"]] == 1
        assert json_id(first) == order_of[bodies[key]["item"]]
    assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
    assert stored_errors == 0
    assert records == keys
    assert tally.server_errors == 0, tally.statuses


def reference_storm(
    sheet: Sheet,
    urls: list[str],
    token: str,
    database_url: str,
    *,
    orders: int,
    same_body_keys: int,
    other_body_keys: int,
) -> None:
    """Each of ``orders`` orders paid at once under many keys (some with another amount),
    spread over ``urls``: one payment per order; every 201 for an order identical; the rest
    409 problems."""
    order_ids = []
    for n in range(orders):
        response = post(
            urls[n % len(urls)], token, "/api/orders/", {"item": "to pay", "quantity": 1}, f"o-{n}"
        )
        assert response.status_code == 201, response.text
        order_ids.append(json_id(response))
    fired: list[tuple[int, dict[str, Any], str, str]] = []
    for order in order_ids:
        for n in range(same_body_keys + other_body_keys):
            amount = "25.00" if n < same_body_keys else f"{30 + n}.00"
            url = urls[n % len(urls)]
            fired.append((order, {"order": order, "amount": amount}, f"pay-{order}-{n}", url))
    tally = Tally()

    def send(body: dict[str, Any], key: str, url: str) -> requests.Response:
        response = post(url, token, "/api/payments/", body, key)
        tally.saw(response)
        return response

    answers = fire_together([lambda b=b, k=k, u=u: send(b, k, u) for _, b, k, u in fired])
    sheet.requests += orders  # the orders paid
    paid = [(order, response) for (order, *_), response in zip(fired, answers, strict=True)]
    one_effect_per_reference(
        sheet, tally, database_url, effects=PAYMENTS_PER_ORDER, references=order_ids, answers=paid
    )


def one_effect_per_reference(
    sheet: Sheet,
    tally: Tally,
    database_url: str,
    *,
    effects: str,
    references: list[int],
    answers: list[tuple[int, requests.Response]],
) -> None:
    """After a storm on ``references`` (each fired at once under many keys): the sheet filled
    in, and the promise asserted: one effect per reference (``effects`` counts them, ``SELECT
    reference, count(*) ... GROUP BY reference``) and, of its ``answers``, one original."""
    with session(database_url) as conn:
        found = rows_by(conn, effects)
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
    fill_in_sheet(sheet, tally, effects=found, operations=references)

    by_reference: dict[int, list[requests.Response]] = defaultdict(list)
    for reference, response in answers:
        by_reference[reference].append(response)
    for reference, responses in by_reference.items():
        assert_one_original(responses, reference)
    assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
    assert stored_errors == 0
    assert tally.server_errors == 0, tally.statuses


def assert_one_original(responses: list[requests.Response], operation: object) -> None:
    """The answers to the copies of one ``operation`` (one key, or one reference under many
    keys) sent at once: one original 201, every other 201 identical to it (a replay), and the
    rest 409 problems (the key still in flight, or the reference held) that a client retries."""
    created = [r for r in responses if r.status_code == 201]
    assert created, (operation, [r.status_code for r in responses])
    assert sum(not is_replayed(r) for r in created) == 1, operation
    assert {r.content for r in created} == {created[0].content}, operation
    for response in responses:
        if response.status_code != 201:
            assert response.status_code == 409, response.text
            assert is_problem(response), response.text
