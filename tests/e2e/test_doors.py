"""Every door of the example project over real HTTP on PostgreSQL, driven by concurrent
copies: the HTML checkout (one rendered page submitted many times) and the DRF transfers
under gunicorn, both ninja operations under gunicorn and uvicorn. 0 duplicates, never a 500."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import CSRF_INPUT, KEY_INPUT, Server, logged_in_browser
from .uvicorn_server import asgi_server

__all__ = ["asgi_server"]  # the fixture, imported for this module's tests

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

TIMEOUT = 30.0
COPIES = 16


def all_at_once(copies: int, send: Callable[[int], requests.Response]) -> list[requests.Response]:
    barrier = threading.Barrier(copies, timeout=TIMEOUT)

    def one(index: int) -> requests.Response:
        barrier.wait()
        return send(index)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return [f.result(timeout=2 * TIMEOUT) for f in [pool.submit(one, i) for i in range(copies)]]


def count(server: Server, table: str) -> int:
    with server.connect() as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_checkout_page_submitted_many_times_creates_one_order(example_server: Server) -> None:
    with logged_in_browser(example_server.url, timeout=TIMEOUT) as browser:
        checkout_storm(example_server, browser)


def checkout_storm(example_server: Server, browser: requests.Session) -> None:
    page = browser.get(f"{example_server.url}/shop/checkout/", timeout=TIMEOUT)
    key, csrf = KEY_INPUT.search(page.text), CSRF_INPUT.search(page.text)
    assert key is not None
    assert csrf is not None
    form = {
        "item": "book",
        "quantity": "2",
        "idempotency_key": key.group(1),
        "csrfmiddlewaretoken": csrf.group(1),
    }
    cookies = browser.cookies.get_dict()

    def submit(_: int) -> requests.Response:
        # A double click, a second tab, back-and-resubmit: the same form, the same cookies.
        return requests.post(
            f"{example_server.url}/shop/checkout/",
            data=form,
            cookies=cookies,
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    responses = all_at_once(COPIES, submit)
    assert [r.status_code for r in responses] == [303] * COPIES, [r.text for r in responses]
    assert len({r.headers["Location"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == COPIES - 1
    assert count(example_server, "shop_order") == 1
    order_page = browser.get(example_server.url + responses[0].headers["Location"])
    assert "2 x book" in order_page.text

    tampered = {**form, "idempotency_key": form["idempotency_key"][:-2] + "xx"}
    refused = requests.post(
        f"{example_server.url}/shop/checkout/", data=tampered, cookies=cookies, timeout=TIMEOUT
    )
    assert refused.status_code == 400
    assert count(example_server, "shop_order") == 1


def test_transfers_with_an_issued_key(example_server: Server) -> None:
    issued = requests.post(
        f"{example_server.url}/api/idempotency-keys/", headers=example_server.headers
    )
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    body = {"amount": "10.00", "to": "bob"}

    def send(_: int) -> requests.Response:
        return requests.post(
            f"{example_server.url}/api/transfers/",
            json=body,
            headers={**example_server.headers, "Idempotency-Key": key},
            timeout=TIMEOUT,
        )

    responses = all_at_once(COPIES, send)
    assert [r.status_code for r in responses] == [201] * COPIES
    assert len({r.content for r in responses}) == 1
    assert count(example_server, "shop_transfer") == 1

    made_up = requests.post(
        f"{example_server.url}/api/transfers/",
        json=body,
        headers={**example_server.headers, "Idempotency-Key": "client-made"},
        timeout=TIMEOUT,
    )
    assert made_up.status_code == 400
    assert made_up.headers["Content-Type"] == "application/problem+json"


def storm_ninja(server: Server, path: str) -> None:
    """COPIES copies of one order and COPIES distinct orders, all at once."""
    bearer = {"Authorization": f"Bearer {server.token}"}

    def send(index: int) -> requests.Response:
        key = "same" if index % 2 == 0 else f"distinct-{index}"
        return requests.post(
            f"{server.url}{path}",
            json={"item": "book", "quantity": 1},
            headers={**bearer, "Idempotency-Key": key},
            timeout=TIMEOUT,
        )

    responses = all_at_once(2 * COPIES, send)
    assert [r.status_code for r in responses] == [201] * (2 * COPIES), [r.text for r in responses]
    same = {r.content for i, r in enumerate(responses) if i % 2 == 0}
    assert len(same) == 1
    assert count(server, "shop_order") == COPIES + 1
    listed = requests.get(f"{server.url}/api/orders/", headers=server.headers, timeout=TIMEOUT)
    assert len(listed.json()) == COPIES + 1


@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
def test_ninja_under_gunicorn(example_server: Server, path: str) -> None:
    storm_ninja(example_server, path)


@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
def test_ninja_under_uvicorn(asgi_server: Server, path: str) -> None:
    storm_ninja(asgi_server, path)


def test_every_door_under_uvicorn(asgi_server: Server) -> None:
    """The ASGI app serves the HTML checkout and the DRF doors too."""
    with logged_in_browser(asgi_server.url, timeout=TIMEOUT) as browser:
        page = browser.get(f"{asgi_server.url}/shop/checkout/", timeout=TIMEOUT)
    assert KEY_INPUT.search(page.text) is not None
    order = requests.post(
        f"{asgi_server.url}/api/orders/",
        json={"item": "a", "quantity": 1},
        headers={**asgi_server.headers, "Idempotency-Key": "k"},
        timeout=TIMEOUT,
    )
    assert order.status_code == 201
    issued = requests.post(f"{asgi_server.url}/api/idempotency-keys/", headers=asgi_server.headers)
    assert issued.status_code == 201
