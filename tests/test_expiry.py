"""Records expire after their TTL; an expired record that is still in the table counts as absent."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Payment
from tests.factories import OrderFactory
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def expire_all() -> None:
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.parametrize("label", ["a", "changed"])
def test_an_expired_key_runs_again(post, label: str) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    expire_all()
    again = post("/test/probe/", {"label": label}, key="k")
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2
    record = IdempotencyRecord.objects.get()
    assert record.expires_at > timezone.now()
    assert (record.replay_count, record.conflict_count) == (0, 0)


@override_settings(IDEMPOTENCY_REFERENCE_TTL=timedelta(days=30))
def test_a_reference_past_its_reference_ttl_no_longer_holds_the_order(post, user) -> None:
    order = OrderFactory(owner=user)
    post("/api/payments/", {"order": order.pk, "amount": "10.00"}, key="pay-1")
    past = timezone.now() - timedelta(seconds=1)
    IdempotencyRecord.objects.update(expires_at=past, reference_expires_at=past)
    again = post("/api/payments/", {"order": order.pk, "amount": "12.00"}, key="pay-2")
    assert again.status_code == 201, again.content
    assert Payment.objects.count() == 2


def test_the_default_ttl_is_24_hours(post) -> None:
    post("/test/probe/", {}, key="k")
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.completed_at == timedelta(hours=24)


@override_settings(IDEMPOTENCY_TTL=90)
def test_the_ttl_is_a_setting(post) -> None:
    post("/test/probe/", {}, key="k")
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.completed_at == timedelta(seconds=90)


@override_settings(IDEMPOTENCY_TTL=90)
def test_a_view_overrides_the_ttl(post) -> None:
    first = post("/test/ttl-probe/", {}, key="k")
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.completed_at == timedelta(milliseconds=500)
    assert post("/test/ttl-probe/", {}, key="k")["Idempotent-Replayed"] == "true"
    time.sleep(0.6)  # let the view's TTL run out for real
    again = post("/test/ttl-probe/", {}, key="k")
    assert again.status_code == first.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2
