"""A DRF view that requires issued keys stores its answer for at least the key's lifetime.

An issued key is accepted for ``IDEMPOTENCY_ISSUED_KEY_MAX_AGE``; a view whose own TTL is
shorter would otherwise forget the answer while the key is still good, and a late retry under
that key would run the operation a second time.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db

PROBE = "/test/w11/issued-ttl-probe/"
ACTION = "/test/w11/issued-ttl-probe/poke/"
# Longer than the views' 500 ms TTL: a record kept only for that TTL has expired by then.
PAST_THE_VIEW_TTL = 0.7


def issued(api: Any) -> str:
    response = api.post("/api/idempotency-keys/")
    assert response.status_code == 201, response.content
    return str(response.json()["key"])


@pytest.mark.parametrize("path", [PROBE, ACTION], ids=["create", "action"])
def test_a_late_retry_under_an_issued_key_is_a_replay(api: Any, post: Any, path: str) -> None:
    key = issued(api)
    first = post(path, {"label": "once"}, key=key)
    assert first.status_code == 201, first.content
    time.sleep(PAST_THE_VIEW_TTL)
    again = post(path, {"label": "once"}, key=key)
    assert again.status_code == 201, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("path", [PROBE, ACTION], ids=["create", "action"])
def test_the_record_lives_as_long_as_the_issued_key(api: Any, post: Any, path: str) -> None:
    post(path, {}, key=issued(api))
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.completed_at == timedelta(hours=24)
