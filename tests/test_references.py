"""Business references in the example project: one payment per order, whatever the key."""

from __future__ import annotations

import pytest

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Payment
from tests.factories import OrderFactory

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


@pytest.fixture
def order(user):  # type: ignore[no-untyped-def]
    return OrderFactory(owner=user)


def pay(post, order, amount: str, key: str):  # type: ignore[no-untyped-def]
    return post("/api/payments/", {"order": order.pk, "amount": amount}, key=key)


def test_same_order_and_body_under_a_new_key_replays_the_payment(post, order) -> None:
    first = pay(post, order, "10.00", "pay-1")
    again = pay(post, order, "10.00", "pay-2")
    assert first.status_code == 201, first.content
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Payment.objects.count() == 1
    # The answer came from the first key's record, and was counted there.
    assert IdempotencyRecord.objects.get(key="pay-1").replay_count == 1


def test_other_body_for_a_paid_order_is_a_409_naming_the_conflict(
    post, order, assert_problem
) -> None:
    first = pay(post, order, "10.00", "pay-1")
    refused = pay(post, order, "20.00", "pay-2")
    document = assert_problem(refused, 409, "idempotency-reference-conflict")
    assert f"order:{order.pk}" in document["detail"]
    assert Payment.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.conflict_count == 1
    assert bytes(record.response_body) == first.content


def test_a_stored_decline_does_not_hold_the_order(post, order, assert_problem) -> None:
    declined = pay(post, order, "20000.00", "pay-1")
    assert_problem(declined, 402, "payment-declined")
    assert Payment.objects.count() == 0
    replayed = pay(post, order, "20000.00", "pay-1")
    assert replayed.status_code == 402
    assert replayed["Idempotent-Replayed"] == "true"
    assert replayed.content == declined.content
    # A smaller amount under a new key pays the same order; that success now holds it.
    paid = pay(post, order, "10.00", "pay-2")
    assert paid.status_code == 201, paid.content
    assert Payment.objects.get().order == order
    assert_problem(pay(post, order, "11.00", "pay-3"), 409)


def test_someone_elses_order_is_a_validation_error(post, other_user, assert_problem) -> None:
    foreign = OrderFactory(owner=other_user)
    document = assert_problem(pay(post, foreign, "10.00", "pay-1"), 400)
    assert "order" in document["errors"]
    assert Payment.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_missing_order_is_a_validation_error(post, assert_problem) -> None:
    response = post("/api/payments/", {"order": 999999, "amount": "1.00"}, key="pay-1")
    assert "order" in assert_problem(response, 400)["errors"]
    assert IdempotencyRecord.objects.count() == 0


def test_references_are_scoped_to_the_user(post, order, other_api) -> None:
    """Bob naming alice's order is judged by his own scope: a validation error, no replay."""
    pay(post, order, "10.00", "pay-1")
    theirs = other_api.post(
        "/api/payments/",
        {"order": order.pk, "amount": "10.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="pay-2",
    )
    assert theirs.status_code == 400
    assert not theirs.has_header("Idempotent-Replayed")
    assert Payment.objects.count() == 1
