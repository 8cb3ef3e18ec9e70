"""A DRF view that takes issued keys stores each answer at least as long as the key is accepted,
whatever its own ``idempotency_ttl``: else a late retry under a valid key would run again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Transfer
from example_project.shop.views import TransferViewSet

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

BODY = {"amount": "12.50", "to": "bob"}


def test_a_short_view_ttl_does_not_let_a_valid_issued_key_run_twice(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TransferViewSet, "idempotency_ttl", 60, raising=False)
    key = api.post("/api/idempotency-keys/").json()["key"]
    first = api.post("/api/transfers/", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 201, first.content
    record = IdempotencyRecord.objects.get()
    # The key is accepted for IDEMPOTENCY_ISSUED_KEY_MAX_AGE (24 h by default).
    assert record.expires_at - timezone.now() > timedelta(hours=23)
    assert Transfer.objects.count() == 1
