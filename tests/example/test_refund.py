"""The example's refund action (``@idempotent`` on a custom action) over the whole rule set."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order, Payment, Refund
from tests.conftest import client_for, race
from tests.factories import OrderFactory

pytestmark = pytest.mark.drf


def payment_of(user: Any, amount: str = "50.00") -> Payment:
    order = OrderFactory(owner=user)
    return Payment.objects.create(owner=user, order=order, amount=Decimal(amount), charge_id="ch")


def refund_url(payment: Payment | int) -> str:
    return f"/api/payments/{getattr(payment, 'pk', payment)}/refund/"


@pytest.fixture
def payment(user: Any) -> Payment:
    return payment_of(user)


@pytest.mark.django_db
def test_a_refund_is_created_and_its_retry_replayed_byte_for_byte(post, payment) -> None:
    first = post(refund_url(payment), {"amount": "20.00"}, key="r1")
    again = post(refund_url(payment), {"amount": "20.00"}, key="r1")

    assert first.status_code == 201, first.content
    body = json.loads(first.content)
    assert set(body) == {"id", "payment", "amount", "created_at"}
    assert body["payment"] == payment.pk
    assert body["amount"] == "20.00"
    assert "Idempotent-Replayed" not in first
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Refund.objects.count() == 1


@pytest.mark.django_db
def test_the_refunds_are_listed(api, post, payment) -> None:
    post(refund_url(payment), {"amount": "20.00"}, key="r1")
    listed = api.get(f"/api/payments/{payment.pk}/refunds/")
    assert listed.status_code == 200
    assert [refund["amount"] for refund in listed.json()] == ["20.00"]


@pytest.mark.django_db
def test_a_key_reused_with_another_amount_is_a_mismatch(post, payment, assert_problem) -> None:
    post(refund_url(payment), {"amount": "20.00"}, key="r1")
    assert_problem(
        post(refund_url(payment), {"amount": "21.00"}, key="r1"), 422, "idempotency-key-mismatch"
    )
    assert Refund.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("key", "code"), [(None, "missing-idempotency-key"), ("", "invalid-idempotency-key")]
)
def test_the_key_is_required_and_checked(post, payment, assert_problem, key, code) -> None:
    assert_problem(post(refund_url(payment), {"amount": "20.00"}, key=key), 400, code)
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_an_amount_above_the_payments_is_a_400_that_releases_the_key(post, payment) -> None:
    refused = post(refund_url(payment), {"amount": "50.01"}, key="r1")
    assert refused.status_code == 400
    assert "amount" in refused.json()["errors"]
    assert IdempotencyRecord.objects.count() == 0
    corrected = post(refund_url(payment), {"amount": "50.00"}, key="r1")
    assert corrected.status_code == 201
    assert "Idempotent-Replayed" not in corrected


@pytest.mark.django_db
def test_another_users_payment_is_a_404_that_releases_the_key(
    post, other_user, assert_problem
) -> None:
    theirs = payment_of(other_user)
    assert_problem(post(refund_url(theirs), {"amount": "1.00"}, key="r1"), 404, "not-found")
    assert IdempotencyRecord.objects.count() == 0
    assert Refund.objects.count() == 0


@pytest.mark.django_db
def test_one_refund_per_payment_whatever_the_key(post, payment, assert_problem) -> None:
    first = post(refund_url(payment), {"amount": "20.00"}, key="r1")
    same = post(refund_url(payment), {"amount": "20.00"}, key="r2")
    assert same.content == first.content
    assert same["Idempotent-Replayed"] == "true"
    other = post(refund_url(payment), {"amount": "5.00"}, key="r3")
    assert_problem(other, 409, "idempotency-reference-conflict")
    # "01" names the same payment to the lookup, so the same reference.
    padded = post(f"/api/payments/0{payment.pk}/refund/", {"amount": "5.00"}, key="r4")
    assert_problem(padded, 409, "idempotency-reference-conflict")
    assert Refund.objects.count() == 1


@pytest.mark.django_db
def test_two_payments_are_two_references(post, user) -> None:
    one, two = payment_of(user), payment_of(user)
    assert post(refund_url(one), {"amount": "1.00"}, key="r1").status_code == 201
    assert post(refund_url(two), {"amount": "1.00"}, key="r2").status_code == 201
    assert Refund.objects.count() == 2


@pytest.mark.django_db
def test_the_same_key_on_two_users_is_two_operations(post, other_api, payment, other_user) -> None:
    theirs = payment_of(other_user)
    assert post(refund_url(payment), {"amount": "1.00"}, key="k").status_code == 201
    assert (
        post(refund_url(theirs), {"amount": "1.00"}, key="k", client=other_api).status_code == 201
    )
    assert Refund.objects.count() == 2


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("keys", ["one", "many"])
def test_concurrent_copies_refund_once(user, monkeypatch, keys: str) -> None:
    monkeypatch.setenv("EXAMPLE_GATEWAY_DELAY_MS", "300")
    payment = payment_of(user)
    client = client_for(user)

    def send(index: int) -> Any:
        key = "storm" if keys == "one" else f"storm-{index}"
        return client.post(
            refund_url(payment), {"amount": "9.99"}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )

    responses = race(10, send)

    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.content for r in responses}) == 1
    assert sum(r.get("Idempotent-Replayed") != "true" for r in responses) == 1
    assert Refund.objects.count() == 1


def test_the_refund_is_documented_in_the_example_schema() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(urlconf="example_project.urls").get_schema(request=None, public=True)
    operation = schema["paths"]["/api/payments/{id}/refund/"]["post"]
    [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["required"] is True
    assert {"201", "400", "403", "409", "413", "422"} <= set(operation["responses"])
    listing = schema["paths"]["/api/payments/{id}/refunds/"]["get"]
    assert not [p for p in listing.get("parameters", []) if p["name"] == "Idempotency-Key"]


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ["%20{pk}", "+{pk}", "{pk}_0", "arabic-indic"])
def test_refund_twice_through_other_url_spellings(
    post: Any, user: Any, assert_problem: Any, spelling: str
) -> None:
    # Attack: each spelling the lookup resolves to one payment must be one reference, and a
    # spelling that names no payment must be a 404 (never a 500).
    order = Order.objects.create(owner=user, item="book", quantity=1)
    payment = Payment.objects.create(owner=user, order=order, amount=Decimal("50.00"))
    first = post(f"/api/payments/{payment.pk}/refund/", {"amount": "1.00"}, key="r1")
    assert first.status_code == 201, first.content
    if spelling == "arabic-indic":  # int() reads these digits too
        text = quote("".join(chr(0x660 + int(digit)) for digit in str(payment.pk)))
    else:
        text = spelling.format(pk=payment.pk)
    path = f"/api/payments/{text}/refund/"
    second = post(path, {"amount": "1.00"}, key="r2")
    if spelling == "{pk}_0":  # int("7_0") is 70: another payment, none of this user's
        assert second.status_code == 404, second.content
    else:
        assert_problem(second, 409, "idempotency-reference-conflict")
    assert Refund.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("pk", ["99999999999999999999", "1%00", "-1"])
def test_refund_of_an_impossible_payment_is_404(post: Any, pk: str) -> None:
    response = post(f"/api/payments/{pk}/refund/", {"amount": "1.00"}, key="r1")
    assert response.status_code == 404, response.content
