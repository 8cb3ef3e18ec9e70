"""Store and release semantics hold when the project wraps every request in a transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Payment
from tests.factories import OrderFactory
from tests.testapp.models import Execution

# Real transactions, so that what a request leaves behind is what it committed.
pytestmark = [pytest.mark.drf, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def atomic_requests() -> Iterator[None]:
    """ATOMIC_REQUESTS is read per request from the connection's settings, so toggle it there."""
    previous = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = previous


def test_the_request_really_is_atomic(post) -> None:
    plain = post("/test/optional-probe/", {"report_atomic_depth": True})
    keyed = post("/test/probe/", {"report_atomic_depth": True}, key="k")
    assert plain.json()["atomic_depth"] == 1  # the request's own block
    assert keyed.json()["atomic_depth"] == 2  # request, claim
    assert keyed.json()["savepoints"] == 2  # the claim's (nested in the request's), the view's
    assert not connection.in_atomic_block


def test_a_success_is_stored_and_replayed(post) -> None:
    first = post("/test/probe/", {"label": "a"}, key="k")
    again = post("/test/probe/", {"label": "a"}, key="k")
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED


def test_a_validation_error_is_released_and_the_corrected_retry_runs(post) -> None:
    assert post("/test/probe/", {"label": "bad", "raise": "validation"}, key="k").status_code == 400
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    assert post("/test/probe/", {"label": "fixed"}, key="k").status_code == 201
    assert list(Execution.objects.values_list("label", flat=True)) == ["fixed"]


@pytest.mark.parametrize("status", [409, 503])
def test_a_release_status_rolls_back_the_views_writes(post, status: int) -> None:
    assert post("/test/probe/", {"label": "bad", "status": status}, key="k").status_code == status
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_crash_rolls_everything_back(post, api) -> None:
    api.raise_request_exception = False
    assert post("/test/probe/", {"raise": "crash"}, key="k").status_code == 500
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_raised_api_error_that_is_stored_rolls_back_the_views_writes(post) -> None:
    first = post("/test/probe/", {"raise": "teapot"}, key="k")
    again = post("/test/probe/", {"raise": "teapot"}, key="k")
    assert first.status_code == again.status_code == 418
    assert again["Idempotent-Replayed"] == "true"
    # As DRF does under ATOMIC_REQUESTS: the view's writes go, the stored answer stays.
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.get().response_status == 418


def test_a_declined_payment_is_stored_although_drf_marks_a_rollback(post, user) -> None:
    order = OrderFactory(owner=user)
    body = {"order": order.pk, "amount": "20000.00"}
    declined = post("/api/payments/", body, key="pay-1")
    assert declined.status_code == 402
    replayed = post("/api/payments/", body, key="pay-1")
    assert replayed["Idempotent-Replayed"] == "true"
    assert replayed.content == declined.content
    assert IdempotencyRecord.objects.get().response_status == 402
    paid = post("/api/payments/", {"order": order.pk, "amount": "10.00"}, key="pay-2")
    assert paid.status_code == 201, paid.content
    assert Payment.objects.count() == 1
