"""A success holds its business reference past its TTL (IDEMPOTENCY_REFERENCE_TTL).

The promise "even a new key cannot pay the same order twice" must not lapse when the stored
response expires or the purge runs: the record's row stays, stripped of its response, and keeps
refusing the reference; the key itself is free again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from example_project.shop.models import Payment
from tests.factories import OrderFactory
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

State = IdempotencyRecord.State


@pytest.fixture
def order(user: Any) -> Any:
    return OrderFactory(owner=user)


def pay(post: Any, order: Any, amount: str, key: str) -> Any:
    return post("/api/payments/", {"order": order.pk, "amount": amount}, key=key)


def expire_all() -> None:
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))


def purge() -> Any:
    return IdempotencyRecord.objects.purge_expired()


@pytest.mark.parametrize("purged", [False, True], ids=["expired", "purged"])
@pytest.mark.parametrize("amount", ["10.00", "12.00"], ids=["same-body", "other-body"])
def test_a_new_key_cannot_pay_an_order_whose_response_expired(
    post: Any, order: Any, assert_problem: Any, purged: bool, amount: str
) -> None:
    assert pay(post, order, "10.00", "pay-1").status_code == 201
    expire_all()
    if purged:
        purge()
    refused = pay(post, order, amount, "pay-2")
    document = assert_problem(refused, 409, "idempotency-reference-conflict")
    assert f"order:{order.pk}" in document["detail"]
    assert "cannot be replayed" in document["detail"]
    assert not refused.has_header("Idempotent-Replayed")
    assert Payment.objects.count() == 1
    held = IdempotencyRecord.objects.get(reference=f"order:{order.pk}")
    assert (held.replay_count, held.conflict_count) == (0, 1)


def test_the_purge_strips_a_held_record_to_a_compact_row(post: Any, order: Any) -> None:
    pay(post, order, "10.00", "pay-1")
    post("/test/probe/", {"label": "no reference"}, key="plain")
    expire_all()
    IdempotencyEvent.objects.create(
        kind="replayed",
        scope="s",
        key="pay-1",
        fingerprint="f" * 64,
        record=IdempotencyRecord.objects.get(key="pay-1"),
        expires_at=timezone.now() - timedelta(seconds=1),
    )

    result = purge()

    assert (result.deleted, result.stripped, result.events_deleted) == (1, 1, 1)
    held = IdempotencyRecord.objects.get()
    assert (held.key, held.state, held.reference) == ("pay-1", State.HELD, f"order:{order.pk}")
    assert (bytes(held.response_body), held.response_headers) == (b"", [])
    assert held.response_status == 201  # what happened is still known, not the body
    # A second purge finds nothing more to do: the row is kept while it holds the reference.
    again = purge()
    assert (again.deleted, again.stripped) == (0, 0)
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.parametrize("purged", [False, True], ids=["expired", "purged"])
def test_a_retry_after_the_ttl_under_the_same_key_is_refused_not_charged_again(
    post: Any, order: Any, assert_problem: Any, purged: bool
) -> None:
    """The key rule treats the key as expired; the reference still refuses: fail safe."""
    pay(post, order, "10.00", "pay-1")
    expire_all()
    if purged:
        purge()
    retry = pay(post, order, "10.00", "pay-1")
    assert_problem(retry, 409, "idempotency-reference-conflict")
    assert Payment.objects.count() == 1


@pytest.mark.parametrize("purged", [False, True], ids=["expired", "purged"])
def test_an_expired_key_is_free_again_for_another_order(
    post: Any, order: Any, user: Any, assert_problem: Any, purged: bool
) -> None:
    pay(post, order, "10.00", "pay-1")
    expire_all()
    if purged:
        purge()
    other = OrderFactory(owner=user)
    paid = pay(post, other, "10.00", "pay-1")
    assert paid.status_code == 201, paid.content
    assert not paid.has_header("Idempotent-Replayed")
    assert Payment.objects.count() == 2
    # The new use of the key replays; the first order stays held by the stripped row.
    assert pay(post, other, "10.00", "pay-1")["Idempotent-Replayed"] == "true"
    assert_problem(pay(post, order, "10.00", "pay-3"), 409, "idempotency-reference-conflict")
    states = sorted(IdempotencyRecord.objects.values_list("state", flat=True))
    assert states == [State.COMPLETED, State.HELD]


def test_by_default_a_reference_is_held_for_as_long_as_the_row_exists(
    post: Any, order: Any
) -> None:
    pay(post, order, "10.00", "pay-1")
    assert IdempotencyRecord.objects.get().reference_expires_at is None


@override_settings(IDEMPOTENCY_REFERENCE_TTL=timedelta(days=30), IDEMPOTENCY_TTL=60)
def test_a_reference_ttl_bounds_the_hold_and_the_purge_then_deletes_the_row(
    post: Any, order: Any
) -> None:
    pay(post, order, "10.00", "pay-1")
    record = IdempotencyRecord.objects.get()
    assert record.completed_at is not None
    assert record.reference_expires_at is not None
    assert record.reference_expires_at - record.completed_at == timedelta(days=30)

    expire_all()
    assert purge().stripped == 1
    IdempotencyRecord.objects.update(reference_expires_at=timezone.now() - timedelta(seconds=1))
    assert purge().deleted == 1
    assert pay(post, order, "12.00", "pay-2").status_code == 201
    assert Payment.objects.count() == 2


@override_settings(IDEMPOTENCY_REFERENCE_TTL=1, IDEMPOTENCY_TTL=60)
def test_a_reference_is_never_released_before_its_response_expires(post: Any, order: Any) -> None:
    pay(post, order, "10.00", "pay-1")
    record = IdempotencyRecord.objects.get()
    assert record.reference_expires_at == record.expires_at


def test_a_failed_request_holds_no_reference_past_its_ttl(post: Any, order: Any) -> None:
    """A stored decline never held the order; the purge deletes it like any other record."""
    assert pay(post, order, "20000.00", "pay-1").status_code == 402
    expire_all()
    assert (purge().deleted, IdempotencyRecord.objects.count()) == (1, 0)


def test_a_purge_dry_run_counts_what_it_would_strip(post: Any, order: Any) -> None:
    pay(post, order, "10.00", "pay-1")
    expire_all()
    preview = IdempotencyRecord.objects.purge_expired(dry_run=True)
    assert (preview.deleted, preview.stripped) == (0, 1)
    assert IdempotencyRecord.objects.get().state == State.COMPLETED


# -- which answers complete the operation for its reference ----------------------------------


def checkout(post: Any, route: str, key: str, **body: Any) -> Any:
    return post(f"/test/shop/{route}/", {"basket": "5", **body}, key=key)


def test_a_gateway_redirect_does_not_hold_the_basket(post: Any) -> None:
    """The view says only a ``201`` completes the checkout: the ``202`` redirect (nothing paid
    yet) is stored and replayed under its key, but the payment that follows is not refused."""
    redirect = checkout(post, "gateway-checkout", "k1")
    assert redirect.status_code == 202
    assert checkout(post, "gateway-checkout", "k1")["Idempotent-Replayed"] == "true"

    paid = checkout(post, "gateway-checkout", "k2", secure_code="123")
    assert paid.status_code == 201, paid.content
    assert not paid.has_header("Idempotent-Replayed")
    # Now the basket is held: a new key cannot pay it again.
    again = checkout(post, "gateway-checkout", "k3", secure_code="123")
    assert again["Idempotent-Replayed"] == "true"
    other = checkout(post, "gateway-checkout", "k4", secure_code="456")
    assert other.status_code == 409
    assert list(Execution.objects.order_by("pk").values_list("label", flat=True)) == [
        "redirect 5",
        "paid 5",
    ]


def test_by_default_every_success_holds_the_reference(post: Any, assert_problem: Any) -> None:
    assert checkout(post, "any-success-checkout", "k1").status_code == 202
    held = checkout(post, "any-success-checkout", "k2", secure_code="123")
    assert_problem(held, 409, "idempotency-reference-conflict")


@override_settings(IDEMPOTENCY_REFERENCE_STATUS_CODES=[200, 201, 204])
def test_the_statuses_that_hold_a_reference_are_a_setting(post: Any) -> None:
    assert checkout(post, "any-success-checkout", "k1").status_code == 202
    paid = checkout(post, "any-success-checkout", "k2", secure_code="123")
    assert paid.status_code == 201, paid.content
    assert IdempotencyRecord.objects.get(key="k2").reference == "basket:5"
    assert IdempotencyRecord.objects.get(key="k1").reference is None
