"""The example's HTML checkout: a form with a server-issued key, double-submit safe."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings

from example_project.shop.models import Order
from tests.conftest import race

CHECKOUT = "/shop/checkout/"
KEY_INPUT = re.compile(r'<input type="hidden" name="idempotency_key" value="([^"]+)">')


def browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def rendered_key(client: Client) -> str:
    page = client.get(CHECKOUT)
    assert page.status_code == 200
    match = KEY_INPUT.search(page.content.decode())
    assert match is not None, page.content
    return match.group(1)


def submit(client: Client, key: str | None, quantity: int = 2, **headers: Any) -> Any:
    data: dict[str, Any] = {"item": "book", "quantity": quantity}
    if key is not None:
        data["idempotency_key"] = key
    return client.post(CHECKOUT, data, **headers)


@pytest.mark.django_db
class TestCheckout:
    def test_login_required_first(self) -> None:
        response = Client().get(CHECKOUT)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
        assert Client().get("/accounts/login/").status_code == 200

    def test_login_form_logs_in(self, user: Any) -> None:
        client = Client()
        response = client.post(
            "/accounts/login/", {"username": "alice", "password": "secret", "next": CHECKOUT}
        )
        assert response.status_code == 302
        assert rendered_key(client)

    def test_submit_creates_one_order_and_redirects_to_it(self, user: Any) -> None:
        client = browser(user)
        response = submit(client, rendered_key(client))
        order = Order.objects.get()
        assert response.status_code == 303
        assert response["Location"] == f"/shop/orders/{order.pk}/"
        assert (order.owner, order.item, order.quantity) == (user, "book", 2)
        page = client.get(response["Location"])
        assert page.status_code == 200
        assert "2 x book" in page.content.decode()

    def test_double_submit_replays_the_redirect(self, user: Any) -> None:
        client = browser(user)
        key = rendered_key(client)
        first, second = submit(client, key), submit(client, key)
        assert second.status_code == 303
        assert second["Location"] == first["Location"]
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first
        assert Order.objects.count() == 1

    def test_each_rendered_form_is_its_own_order(self, user: Any) -> None:
        client = browser(user)
        submit(client, rendered_key(client))
        submit(client, rendered_key(client))
        assert Order.objects.count() == 2

    def test_missing_key_is_400_html_for_a_browser(self, user: Any) -> None:
        response = submit(browser(user), None)
        assert response.status_code == 400
        assert response["Content-Type"].startswith("text/html")
        assert "Idempotency-Key required" in response.content.decode()
        assert Order.objects.count() == 0

    def test_missing_key_is_problem_json_for_a_json_client(
        self, user: Any, assert_problem: Any
    ) -> None:
        response = submit(browser(user), None, HTTP_ACCEPT="application/json")
        assert_problem(response, 400, "missing-idempotency-key")

    def test_tampered_key_is_400(self, user: Any, assert_problem: Any) -> None:
        client = browser(user)
        key = rendered_key(client)
        tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
        response = submit(client, tampered, HTTP_ACCEPT="application/json")
        assert_problem(response, 400, "invalid-issued-key")
        assert submit(client, tampered).status_code == 400
        assert Order.objects.count() == 0

    def test_made_up_key_is_400(self, user: Any, assert_problem: Any) -> None:
        response = submit(browser(user), "my-own-key", HTTP_ACCEPT="application/json")
        assert_problem(response, 400, "invalid-issued-key")
        header = browser(user).post(
            CHECKOUT,
            {"item": "book", "quantity": 1},
            HTTP_IDEMPOTENCY_KEY="my-own-key",
            HTTP_ACCEPT="application/json",
        )
        assert_problem(header, 400, "invalid-issued-key")
        assert Order.objects.count() == 0

    def test_foreign_key_is_400(self, user: Any, other_user: Any, assert_problem: Any) -> None:
        bobs_key = rendered_key(browser(other_user))
        response = submit(browser(user), bobs_key, HTTP_ACCEPT="application/json")
        assert_problem(response, 400, "invalid-issued-key")
        assert Order.objects.count() == 0

    def test_expired_key_is_400(self, user: Any, assert_problem: Any) -> None:
        client = browser(user)
        key = rendered_key(client)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=timedelta(seconds=-1)):
            response = submit(client, key, HTTP_ACCEPT="application/json")
        assert_problem(response, 400, "issued-key-expired")
        assert Order.objects.count() == 0

    def test_changed_form_under_one_key_is_refused(self, user: Any) -> None:
        client = browser(user)
        key = rendered_key(client)
        submit(client, key, quantity=2)
        response = submit(client, key, quantity=3)
        assert response.status_code == 422
        assert response["Content-Type"].startswith("text/html")
        assert Order.objects.count() == 1

    def test_invalid_form_releases_the_key(self, user: Any) -> None:
        client = browser(user)
        key = rendered_key(client)
        refused = submit(client, key, quantity=0)
        assert refused.status_code == 400
        assert Order.objects.count() == 0
        # Corrected and sent again under the same key: it runs, nothing was stored for it.
        fixed = submit(client, key, quantity=1)
        assert fixed.status_code == 303
        assert "Idempotent-Replayed" not in fixed
        assert Order.objects.count() == 1


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_one_rendered_form_submitted_at_once_from_many_threads(user: Any) -> None:
    key = rendered_key(browser(user))
    copies = 8
    clients = [browser(user) for _ in range(copies)]
    responses = race(copies, lambda index: submit(clients[index], key))
    assert [r.status_code for r in responses] == [303] * copies
    assert len({r["Location"] for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") == "true" for r in responses) == copies - 1
    assert Order.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("multipart", [True, False])
def test_real_csrf_check_and_either_form_encoding(user: Any, multipart: bool) -> None:
    """Django's CSRF middleware parses the form before the view; the key still works."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(CHECKOUT).content.decode()
    key = KEY_INPUT.search(page)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert key is not None
    assert csrf is not None
    data = {
        "item": "book",
        "quantity": 1,
        "idempotency_key": key.group(1),
        "csrfmiddlewaretoken": csrf.group(1),
    }
    if multipart:
        responses = [client.post(CHECKOUT, data) for _ in range(2)]
    else:
        body = "&".join(f"{name}={value}" for name, value in data.items())
        responses = [
            client.post(CHECKOUT, body, content_type="application/x-www-form-urlencoded")
            for _ in range(2)
        ]
    assert [r.status_code for r in responses] == [303, 303]
    assert responses[1]["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


IN_FLIGHT_FORM = re.compile(
    r'<form method="post" action="([^"]*)" enctype="([^"]*)">(.*?)</form>', re.S
)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
@override_settings(IDEMPOTENCY_LOCK_TIMEOUT=0.2)
def test_a_second_click_on_a_slow_checkout_resends_the_same_order(user: Any, monkeypatch) -> None:
    """Two real concurrent submissions of one rendered form while the provider is slow: the
    second is told the first is in flight; doing what its page offers shows the one order."""
    monkeypatch.setenv("EXAMPLE_CHECKOUT_DELAY_MS", "3000")  # far beyond the 0.2 s lock wait
    client = browser(user)
    key = rendered_key(client)

    clicks = race(2, lambda _: submit(client, key))

    placed, in_flight = sorted(clicks, key=lambda response: response.status_code)
    assert (placed.status_code, in_flight.status_code) == (303, 409)
    assert in_flight["Retry-After"] == "1"
    page = in_flight.content.decode()
    # The page must not send the user back to a fresh form (a new key: a second order).
    assert f'href="{CHECKOUT}"' not in page
    form = IN_FLIGHT_FORM.search(page)
    assert form is not None, page
    action, enctype, inputs = form.groups()
    fields: dict[str, list[str]] = {}
    for name, value in HIDDEN.findall(inputs):
        fields.setdefault(html.unescape(name), []).append(html.unescape(value))
    assert fields["idempotency_key"] == [key]
    assert enctype == "multipart/form-data"  # as the browser sent it (the test client's way)

    resent = client.post(html.unescape(action), fields)

    assert resent.status_code == 303
    assert resent["Idempotent-Replayed"] == "true"
    assert resent["Location"] == placed["Location"]
    assert Order.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b"item=x&quantity=1&idempotency_key=a%00b",
        b"item=x&quantity=1&idempotency_key=%ED%A0%80",
        b"item=x&quantity=1&idempotency_key=" + b"a" * 5000,
        b"item=x&quantity=99999999999999999999999&idempotency_key=x",
    ],
)
def test_hostile_checkout_forms_are_400(user: Any, body: bytes) -> None:
    client = browser(user)
    response = client.generic("POST", "/shop/checkout/", body, "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_bad_multipart_checkout_is_400(user: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.generic(
        "POST", "/shop/checkout/", b"--x\r\nbroken", "multipart/form-data; boundary=x"
    )
    assert response.status_code == 400
    assert Order.objects.count() == 0
