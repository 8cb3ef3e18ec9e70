"""A first request runs and is stored; a retry gets the stored response and the view rests."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

DATE = "Tue, 01 Jan 2030 00:00:00 GMT"
PROBE = {
    "label": "a",
    "headers": {"Location": "/test/probe/7/", "Date": DATE, "Content-Language": "de"},
    "cookie": "yum",
}


def test_first_request_runs_once_and_is_stored(post) -> None:
    response = post("/test/probe/?v=1", PROBE, key="k")
    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert record.key == "k"
    assert record.state == IdempotencyRecord.State.COMPLETED
    assert record.request_method == "POST"
    assert record.request_path == "/test/probe/?v=1"
    assert record.response_status == 201
    assert bytes(record.response_body) == response.content
    assert (record.replay_count, record.conflict_count) == (0, 0)


def test_replay_is_byte_for_byte_with_the_replayable_headers(post) -> None:
    first = post("/test/probe/", PROBE, key="k")
    again = post("/test/probe/", PROBE, key="k")
    assert again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    for name in ("Content-Type", "Location", "ETag", "Content-Language"):
        assert again[name] == first[name], name
    # Every header but the deny-list is replayed now, this custom one included (issue 9.17).
    assert again["X-Not-Replayed"] == first["X-Not-Replayed"] == "1"
    assert Execution.objects.count() == 1


@override_settings(IDEMPOTENCY_REPLAY_HEADERS=["Content-Type", "ETag", "Set-Cookie", "Date"])
def test_set_cookie_and_date_are_never_stored_or_replayed(post) -> None:
    # One cookie through the cookie jar, one written straight into the headers.
    body = {**PROBE, "headers": {**PROBE["headers"], "Set-Cookie": "raw=1"}}
    first = post("/test/probe/", body, key="k")
    assert first.cookies["probe"].value == "yum"
    assert first["Set-Cookie"] == "raw=1"
    assert first["Date"] == DATE
    again = post("/test/probe/", body, key="k")
    assert again["Idempotent-Replayed"] == "true"
    assert again["ETag"] == '"v1"'
    assert not again.has_header("Date")
    assert not again.has_header("Set-Cookie")
    assert "probe" not in again.cookies
    stored = {name.lower() for name, _ in IdempotencyRecord.objects.get().response_headers}
    assert stored == {"content-type", "etag"}


@pytest.mark.parametrize("status", [200, 201, 202, 203])
def test_the_stored_status_is_replayed(post, status: int) -> None:
    post("/test/probe/", {"status": status}, key="k")
    again = post("/test/probe/", {"status": status}, key="k")
    assert again.status_code == status
    assert again["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1


def test_order_replays_as_201_with_its_location(post) -> None:
    body = {"item": "book", "quantity": 2}
    first = post("/api/orders/", body, key="order-1")
    replays = [post("/api/orders/", body, key="order-1") for _ in range(3)]
    assert first.status_code == 201
    order = Order.objects.get()
    assert first["Location"] == f"/api/orders/{order.pk}/"
    assert first.json()["id"] == order.pk
    for replay in replays:
        assert replay.status_code == 201
        assert replay.content == first.content
        assert replay["Location"] == first["Location"]
        assert replay["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1
    assert IdempotencyRecord.objects.get().replay_count == 3


def test_a_new_key_is_a_new_operation(post) -> None:
    body = {"item": "book", "quantity": 2}
    first = post("/api/orders/", body, key="order-1")
    second = post("/api/orders/", body, key="order-2")
    assert second.status_code == 201
    assert not second.has_header("Idempotent-Replayed")
    assert second.json()["id"] != first.json()["id"]
    assert Order.objects.count() == 2


def test_a_replay_runs_none_of_the_views_finalize_response(post) -> None:
    """A view whose finalize_response swaps in the live basket: the replay is still the
    stored bytes, marked replayed, not a fresh body built by the view."""
    first = post("/test/shop/live-basket/", {"product": "book"}, key="k")
    assert first.status_code == 201
    assert first.json() == {"lines": 1}
    Execution.objects.create(label="basket line")  # the live basket changes meanwhile

    again = post("/test/shop/live-basket/", {"product": "book"}, key="k")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
