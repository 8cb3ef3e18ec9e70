"""A real browser (Debian's chromium, headless, through chromium-driver) against the example
under gunicorn: the checkout form and the fetch() page double-clicked, reloaded, sent back and
resubmitted while the first submission is in flight, and over a dropped connection. Each ends
in exactly one order, and every page the user is left on says what really happened."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.client.support import ThreadedProxy, serve_example
from tests.e2e.conftest import E2E_USERNAME
from tests.e2e.faults.harness import Instance

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

#: The checkout takes this long: long enough to click, reload or go back while it runs,
#: shorter than IDEMPOTENCY_LOCK_TIMEOUT, so a copy waits for it and gets its answer.
CHECKOUT_MS = 1500
WAIT = 30.0


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: scripts/bootstrap.sh installs chromium, chromium-driver")
    return found


@pytest.fixture(scope="module")
def app(
    e2e_admin_url: str, e2e_template: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    log_dir = tmp_path_factory.mktemp("browser-gunicorn")
    with serve_example(
        e2e_admin_url, e2e_template, log_dir, EXAMPLE_CHECKOUT_DELAY_MS=str(CHECKOUT_MS)
    ) as instance:
        yield instance


@pytest.fixture(scope="module")
def proxy(app: Instance) -> Iterator[ThreadedProxy]:
    """The browser reaches the server through the fault proxy."""
    threaded = ThreadedProxy.to(app.url)
    yield threaded
    threaded.close()


@pytest.fixture(scope="module")
def browser(proxy: ThreadedProxy) -> Iterator[WebDriver]:
    """Headless chromium, logged in as the e2e user. ``driver.get`` returns at once (strategy
    "none"); the tests wait for what they need to see."""
    options = webdriver.ChromeOptions()
    options.binary_location = _executable("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.page_load_strategy = "none"
    driver = webdriver.Chrome(options=options, service=Service(_executable("chromedriver")))
    try:
        driver.get(f"{proxy.url}/accounts/login/")
        find(driver, "input[name=username]").send_keys(E2E_USERNAME)
        find(driver, "input[name=password]").send_keys("e2e")
        find(driver, "button[type=submit]").click()
        until(
            driver, lambda: "/shop/checkout/" in driver.current_url and title(driver) == "Checkout"
        )
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def db(app: Instance) -> Iterator[psycopg.Connection[Any]]:
    with app.server.connect() as conn:
        yield conn


@pytest.fixture
def item() -> str:
    """An item name of this test's own: its orders are counted by it."""
    return f"item-{secrets.token_hex(4)}"


# -- helpers -------------------------------------------------------------------------------


def until(driver: WebDriver, condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    return WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(Exception,)
    ).until(lambda _: condition())


def find(driver: WebDriver, selector: str) -> WebElement:
    return until(driver, lambda: driver.find_element(By.CSS_SELECTOR, selector))


def title(driver: WebDriver) -> str:
    return str(
        driver.execute_script("return document.readyState === 'complete' ? document.title : ''")
    )


def text(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def orders(db: psycopg.Connection[Any], item: str) -> list[tuple[int, int]]:
    """``(id, quantity)`` of the orders of ``item``."""
    rows = db.execute("SELECT id, quantity FROM shop_order WHERE item = %s ORDER BY id", [item])
    return [(int(pk), int(quantity)) for pk, quantity in rows.fetchall()]


def in_view(db: psycopg.Connection[Any]) -> bool:
    """A worker is inside a request's transaction (claim, view and store commit together)."""
    row = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
    ).fetchone()
    return bool(row and row[0])


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def open_checkout(driver: WebDriver, base: str, item: str, quantity: int = 2) -> WebElement:
    driver.get(f"{base}/shop/checkout/")
    until(driver, lambda: title(driver) == "Checkout")
    find(driver, "input[name=item]").send_keys(item)
    field = find(driver, "input[name=quantity]")
    field.clear()
    field.send_keys(str(quantity))
    return find(driver, "button[type=submit]")


def assert_order_page(driver: WebDriver, order: tuple[int, int], item: str) -> None:
    """The page the user is left on shows the one order that exists."""
    until(driver, lambda: title(driver) == f"Order {order[0]}")
    assert text(driver, "h1") == f"Order {order[0]}"
    assert text(driver, "#order") == f"{order[1]} x {item}"


def key_on_page(driver: WebDriver) -> str:
    return str(
        driver.find_element(By.CSS_SELECTOR, "input[name=idempotency_key]").get_attribute("value")
    )


# -- the checkout form (an HTML form, a server-issued key) ---------------------------------
#
# chromedriver answers no command while a navigation is pending, so what the user does while
# a form submission is on its way (a second click, a reload, the back button) is scheduled in
# the page itself, a moment after the first click.

GAP_MS = 500  # well inside CHECKOUT_MS: the first submission is still being carried out


def submit_then(driver: WebDriver, then: str) -> None:
    """Click the submit button, and ``GAP_MS`` later run ``then`` (JavaScript) in the page."""
    driver.execute_script(
        "var button = document.querySelector('button[type=submit]');"
        f"button.click(); setTimeout(function () {{ {then} }}, {GAP_MS});"
    )


def test_checkout_double_click_places_one_order(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    open_checkout(browser, proxy.url, item)
    posts = proxy.count(b"POST /shop/checkout/")

    submit_then(browser, "button.click();")  # the page is still the form: sent again

    wait_for(lambda: len(orders(db, item)) > 0)
    [order] = orders(db, item)
    # The second submission (the one the browser kept) got the first one's answer.
    assert_order_page(browser, order, item)
    assert posts() == 2
    assert orders(db, item) == [order]


def test_checkout_reload_while_in_flight_places_one_order(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    """A reload while the submission is pending reloads the form, not the POST: the order
    is placed once, and the fresh form carries a new key (sending it is a new order). An
    HTML form cannot tell the user about the submission it dropped; the fetch() page can."""
    open_checkout(browser, proxy.url, item)
    key = key_on_page(browser)

    submit_then(browser, "location.reload();")

    until(browser, lambda: title(browser) == "Checkout" and key_on_page(browser) != key)
    wait_for(lambda: len(orders(db, item)) > 0)
    assert len(orders(db, item)) == 1
    assert find(browser, "input[name=item]").get_attribute("value") == ""  # a new, empty form


def test_checkout_back_and_resubmit_while_in_flight_places_one_order(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    browser.get(f"{proxy.url}/")
    until(browser, lambda: title(browser) not in ("", "Checkout"))
    open_checkout(browser, proxy.url, item)
    key = key_on_page(browser)
    posts = proxy.count(b"POST /shop/checkout/")

    submit_then(browser, "history.back();")
    until(browser, lambda: title(browser) not in ("", "Checkout"))
    browser.forward()  # the form as it was left: its key, its fields
    until(browser, lambda: title(browser) == "Checkout")
    assert key_on_page(browser) == key
    find(browser, "button[type=submit]").click()  # while the first may still be running

    wait_for(lambda: len(orders(db, item)) > 0)
    [order] = orders(db, item)
    assert_order_page(browser, order, item)
    assert posts() == 2
    assert orders(db, item) == [order]


# -- the fetch() page (idempotency.js: a key per submission, kept in sessionStorage) --------

QUICK_ORDER = b"POST /shop/quick-order/"


def open_quick_order(driver: WebDriver, base: str, item: str, quantity: int = 2) -> WebElement:
    driver.get(f"{base}/shop/quick-order/")
    until(driver, lambda: title(driver) == "Quick order")
    until(driver, lambda: driver.execute_script("return !!window.DjangoIdempotency"))
    find(driver, "input[name=item]").send_keys(item)
    field = find(driver, "input[name=quantity]")
    field.clear()
    field.send_keys(str(quantity))
    return find(driver, "button[type=submit]")


def shown_order(driver: WebDriver) -> tuple[int, str, str]:
    """(order id, the result line, the status line) once the page shows an order."""
    link = until(driver, lambda: driver.find_element(By.CSS_SELECTOR, "#order-link"))
    return int(link.get_attribute("data-order")), text(driver, "#result"), text(driver, "#status")


def attempts_shown(driver: WebDriver) -> int:
    return int(driver.find_element(By.CSS_SELECTOR, "#result").get_attribute("data-attempts"))


def test_fetch_page_double_click_sends_one_submission(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    open_quick_order(browser, proxy.url, item)
    posts = proxy.count(QUICK_ORDER)

    # Two submit events: the second joins the first (the button is disabled too).
    browser.execute_script(
        "var form = document.querySelector('#order-form');"
        "form.requestSubmit(); setTimeout(function () { form.requestSubmit(); }, 100);"
    )

    order, result, status = shown_order(browser)
    assert orders(db, item) == [(order, 2)]
    assert result == f"Placed: Order {order}: 2 x {item}"
    assert status == "Done."
    assert posts() == 1


def test_fetch_page_reload_while_in_flight_learns_what_became_of_it(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    button = open_quick_order(browser, proxy.url, item)
    posts = proxy.count(QUICK_ORDER)
    button.click()
    wait_for(lambda: in_view(db))  # a fetch() is no navigation: the driver is free

    browser.refresh()

    order, result, _ = shown_order(browser)
    assert orders(db, item) == [(order, 2)]
    assert result == f"Your earlier submission was placed: Order {order}: 2 x {item}"
    assert posts() == 2  # the first, and the same one sent again by the reloaded page


def test_fetch_page_back_and_forward_while_in_flight_learns_what_became_of_it(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    browser.get(f"{proxy.url}/")
    until(browser, lambda: title(browser) not in ("", "Quick order"))
    button = open_quick_order(browser, proxy.url, item)
    button.click()
    wait_for(lambda: in_view(db))

    browser.back()
    until(browser, lambda: title(browser) not in ("", "Quick order"))
    browser.forward()

    order, result, _ = shown_order(browser)
    assert orders(db, item) == [(order, 2)]
    # From the back-forward cache the page kept waiting for its answer ("Placed"); reloaded,
    # it found the submission in sessionStorage and sent it again: both are the truth.
    assert result in (
        f"Placed: Order {order}: 2 x {item}",
        f"Your earlier submission was placed: Order {order}: 2 x {item}",
    )


def test_fetch_page_retries_over_a_connection_dropped_mid_request(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    button = open_quick_order(browser, proxy.url, item)
    button.click()
    wait_for(lambda: in_view(db))
    # The answer to the placed order is lost, and so are the next copies on their way.
    cuts = proxy.cut(QUICK_ORDER, 3)
    proxy.call(lambda: proxy.proxy.reset(100))

    order, result, status = shown_order(browser)
    assert cuts() == 3
    assert orders(db, item) == [(order, 2)]
    assert result == f"Placed: Order {order}: 2 x {item}"
    # The same submission sent again got the first one's answer, and the page says so.
    assert status == "Done (this is the answer to your earlier, identical submission)."
    assert attempts_shown(browser) >= 2


def test_fetch_page_retries_a_submission_the_server_never_received(
    browser: WebDriver, proxy: ThreadedProxy, db: psycopg.Connection[Any], item: str
) -> None:
    button = open_quick_order(browser, proxy.url, item)
    cuts = proxy.cut(QUICK_ORDER, 3)

    button.click()

    order, result, status = shown_order(browser)
    assert orders(db, item) == [(order, 2)]
    assert result == f"Placed: Order {order}: 2 x {item}"
    assert status == "Done."  # carried out by the first attempt that arrived: no replay
    assert cuts() == 3
    # Chrome itself resends a request whose connection died, sometimes: with the same
    # Idempotency-Key, as the helper does. At least one failure reached the helper.
    assert attempts_shown(browser) >= 2
