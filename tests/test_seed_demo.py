"""The demo's ``seed_demo`` command: a usable user and token, and commands that use them."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from example_project.shop.models import Order, Payment
from tests.factories import OrderFactory, UserFactory

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", "--base-url", "http://127.0.0.1:9999", stdout=out)
    return out.getvalue()


def test_creates_demo_user_with_token_and_prints_it() -> None:
    output = seed()

    user = get_user_model().objects.get(username="demo")
    assert authenticate(username="demo", password="demo") == user
    token = Token.objects.get(user=user)
    assert f"API token: {token.key}" in output
    assert output.count(f"Authorization: Token {token.key}") >= 3


def test_prints_an_order_request_its_replay_and_a_payment_of_the_seeded_order() -> None:
    output = seed()

    order = Order.objects.get(owner__username="demo")
    order_keys = re.findall(
        r"http://127\.0\.0\.1:9999/api/orders/ .*?Idempotency-Key: (\S+)'", output, flags=re.S
    )
    # The same request twice: the second one shows the replay.
    assert len(order_keys) == 2
    assert order_keys[0] == order_keys[1]
    assert f'"order": {order.pk}, "amount": "25.00"' in output
    assert "http://127.0.0.1:9999/api/payments/" in output


def test_second_run_reuses_user_token_and_unpaid_order() -> None:
    first = seed()
    token = Token.objects.get(user__username="demo").key

    second = seed()

    assert get_user_model().objects.filter(username="demo").count() == 1
    assert Token.objects.get(user__username="demo").key == token
    assert Order.objects.filter(owner__username="demo").count() == 1
    assert "Reusing user 'demo'" in second
    assert f"API token: {token}" in first
    assert f"API token: {token}" in second


def test_resets_a_changed_password_and_seeds_a_new_order_once_the_old_one_is_paid() -> None:
    user = UserFactory(username="demo")  # password "secret"
    seed()
    paid = Order.objects.get(owner=user)
    Payment.objects.create(owner=user, order=paid, amount="25.00", charge_id="ch_test")
    OrderFactory(owner=user, item="somebody else's idea")  # not the seeded item: ignored

    output = seed()

    assert authenticate(username="demo", password="demo") == user
    fresh = Order.objects.get(owner=user, item="seeded demo order", payments__isnull=True)
    assert fresh.pk != paid.pk
    assert f'"order": {fresh.pk},' in output


def test_prints_how_to_try_every_other_door() -> None:
    output = seed()
    token = Token.objects.get(user__username="demo").key
    for route in (
        "/accounts/login/",
        "/shop/checkout/",
        "/ninja/orders/",
        "/ninja/async/orders/",
        "/api/idempotency-keys/",
        "/api/transfers/",
    ):
        assert f"http://127.0.0.1:9999{route}" in output, route
    assert f"Authorization: Bearer {token}" in output
    assert "uvicorn example_project.asgi:application" in output


def test_the_printed_steps_are_numbered_once_each_in_order() -> None:
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", seed(), flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1))
