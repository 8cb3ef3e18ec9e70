"""Under ATOMIC_REQUESTS a refusal is rolled back like every error DRF answers (issue 9, 16)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

pytestmark = [pytest.mark.drf, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    previous = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = previous


def mismatch(post) -> None:
    assert post("/test/probe/", {"label": "a"}, key="k").status_code == 201
    assert post("/test/probe/", {"label": "b"}, key="k").status_code == 422


def test_a_refusal_under_atomic_requests_leaves_counter_and_event_unchanged(
    post, atomic_requests
) -> None:
    mismatch(post)
    assert IdempotencyRecord.objects.get().conflict_count == 0
    assert not IdempotencyEvent.objects.filter(kind="mismatch").exists()


def test_without_atomic_requests_the_refusal_is_counted_and_logged(post) -> None:
    mismatch(post)
    assert IdempotencyRecord.objects.get().conflict_count == 1
    assert IdempotencyEvent.objects.filter(kind="mismatch").count() == 1
