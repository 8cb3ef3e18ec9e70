"""Storms on the other doors, over real HTTP on PostgreSQL, with figures for the report: the
HTML checkout (each rendered page submitted many times at once, across two gunicorn
instances) and both django-ninja operations (the sync one across two gunicorn instances, the
async one under uvicorn). One order per rendered page or key; never a 500."""

from __future__ import annotations

from collections import defaultdict

import psycopg
import pytest
import requests

from tests.e2e.conftest import CSRF_INPUT, KEY_INPUT, Server, logged_in_browser
from tests.e2e.uvicorn_server import asgi_server

from .conftest import Launch
from .figures import E2E, Sheet, measure
from .harness import (
    Tally,
    fill_in_sheet,
    fire_together,
    in_flight_records,
    is_replayed,
    rows_by,
    stored_server_errors,
)
from .storms import assert_one_original

__all__ = ["asgi_server"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

TIMEOUT = 60.0
PAGES, SUBMITS = 6, 6
KEYS, COPIES = 6, 6


def _settle(sheet: Sheet, database_url: str, tally: Tally, names: list[str]) -> dict[str, int]:
    """Fill in the sheet from the database; the orders per item."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        orders = rows_by(conn, "SELECT item, count(*) FROM shop_order GROUP BY item")
        sheet.stuck_records = in_flight_records(conn)
        stored_errors = stored_server_errors(conn)
    ours = {name: orders.get(name, 0) for name in names}
    fill_in_sheet(sheet, tally, effects=ours, operations=names)
    assert stored_errors == 0
    return orders


def test_checkout_storm_across_two_app_servers(e2e_database_url: str, launch: Launch) -> None:
    servers = [launch(e2e_database_url, name=f"app-{n}", delay_ms=200) for n in (1, 2)]
    urls = [s.url for s in servers]
    with measure(
        "Checkout form storm across two app servers",
        section=E2E,
        what=f"{PAGES} checkout pages (GET /shop/checkout/, each with its own issued key), each "
        f"submitted {SUBMITS} times at once from the one rendered page (double clicks, second "
        "tabs) over two gunicorn instances: one order and one 303 per page.",
    ) as sheet:
        with logged_in_browser(urls[0], timeout=TIMEOUT) as browser:
            forms = []
            for n in range(PAGES):
                page = browser.get(f"{urls[n % 2]}/shop/checkout/", timeout=TIMEOUT)
                key, csrf = KEY_INPUT.search(page.text), CSRF_INPUT.search(page.text)
                assert key is not None, page.text
                assert csrf is not None, page.text
                forms.append(
                    {
                        "item": f"page-{n}",
                        "quantity": "1",
                        "idempotency_key": key.group(1),
                        "csrfmiddlewaretoken": csrf.group(1),
                    }
                )
            cookies = browser.cookies.get_dict()
        sheet.requests += 1 + PAGES  # the login and the rendered pages
        tally = Tally()

        def submit(form: dict[str, str], url: str) -> requests.Response:
            response = requests.post(
                f"{url}/shop/checkout/",
                data=form,
                cookies=cookies,
                allow_redirects=False,
                timeout=TIMEOUT,
            )
            tally.saw(response)
            return response

        fired = [(form, urls[n % 2]) for form in forms for n in range(SUBMITS)]
        answers = fire_together([lambda f=f, u=u: submit(f, u) for f, u in fired])
        names = [form["item"] for form in forms]
        orders = _settle(sheet, e2e_database_url, tally, names)

        by_page: dict[str, list[requests.Response]] = defaultdict(list)
        for (form, _), response in zip(fired, answers, strict=True):
            by_page[form["item"]].append(response)
        for name, responses in by_page.items():
            assert [r.status_code for r in responses] == [303] * SUBMITS, tally.statuses
            assert len({r.headers["Location"] for r in responses}) == 1, name
            assert sum(not is_replayed(r) for r in responses) == 1, name
            assert orders[name] == 1
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
        assert tally.server_errors == 0, tally.statuses


def _ninja_storm(sheet: Sheet, urls: list[str], token: str, path: str, database_url: str) -> None:
    """``KEYS`` x ``COPIES`` POSTs at once, the copies of each key spread over ``urls``."""
    names = [f"ninja-{n}" for n in range(KEYS)]
    tally = Tally()

    def send(name: str, url: str) -> requests.Response:
        response = requests.post(
            f"{url}{path}",
            json={"item": name, "quantity": 1},
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": name},
            timeout=TIMEOUT,
        )
        tally.saw(response)
        return response

    fired = [(name, urls[n % len(urls)]) for name in names for n in range(COPIES)]
    answers = fire_together([lambda k=k, u=u: send(k, u) for k, u in fired])
    orders = _settle(sheet, database_url, tally, names)

    by_key: dict[str, list[requests.Response]] = defaultdict(list)
    for (name, _), response in zip(fired, answers, strict=True):
        by_key[name].append(response)
    for name, responses in by_key.items():
        assert_one_original(responses, name)
        assert orders[name] == 1
    assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)
    assert tally.server_errors == 0, tally.statuses


def test_ninja_sync_storm_across_two_app_servers(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    servers = [launch(e2e_database_url, name=f"app-{n}") for n in (1, 2)]
    with measure(
        "django-ninja storm across two app servers",
        section=E2E,
        what=f"{KEYS} keys x {COPIES} copies at once to POST /ninja/orders/ (a sync ninja "
        "operation, Bearer token) over two gunicorn instances: one order per key.",
    ) as sheet:
        _ninja_storm(sheet, [s.url for s in servers], e2e_token, "/ninja/orders/", e2e_database_url)


def test_ninja_async_storm_under_uvicorn(asgi_server: Server) -> None:
    with measure(
        "django-ninja async storm under uvicorn",
        section=E2E,
        what=f"{KEYS} keys x {COPIES} copies at once to POST /ninja/async/orders/ (an async def "
        "ninja operation) under uvicorn (2 workers, ASGI): one order per key.",
    ) as sheet:
        _ninja_storm(
            sheet,
            [asgi_server.url],
            asgi_server.token,
            "/ninja/async/orders/",
            asgi_server.database_url,
        )
