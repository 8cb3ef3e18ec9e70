"""Expiry is decided by the database's clock (PostgreSQL's, MariaDB's), not the app server's.

With several app servers, one whose clock runs ahead must not treat live records as expired (and
run the operation again, or purge them), and one running behind must not replay what expired.
The skew is real for the app process: ``django.utils.timezone.now`` is what every app-side
clock reading goes through; the database keeps its own time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_idempotency.models import IdempotencyRecord
from django_idempotency.models.clock import UtcNow
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.concurrent_db, pytest.mark.django_db]

SKEW = timedelta(days=2)


@pytest.fixture
def skew_app_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    real_now = timezone.now

    def skew(by: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + by)

    return skew


def database_now() -> datetime:
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            return timezone.make_aware(cursor.fetchone()[0], dt_timezone.utc)
        cursor.execute("SELECT statement_timestamp()")
        now: datetime = cursor.fetchone()[0]
    return now


@pytest.mark.parametrize("body", [{"label": "a"}, {"label": "changed"}])
def test_an_app_clock_ahead_still_replays_a_live_key(
    post: Any, skew_app_clock: Any, body: dict[str, str]
) -> None:
    first = post("/test/probe/", {"label": "a"}, key="k")
    skew_app_clock(SKEW)
    again = post("/test/probe/", body, key="k")
    if body == {"label": "a"}:
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == first.content
    else:
        assert again.status_code == 422
    assert Execution.objects.count() == 1


def test_an_app_clock_behind_does_not_replay_an_expired_key(post: Any, skew_app_clock: Any) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    IdempotencyRecord.objects.update(expires_at=UtcNow())  # expired by the database's clock
    skew_app_clock(-SKEW)
    again = post("/test/probe/", {"label": "a"}, key="k")
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2


def test_a_record_is_dated_by_the_database_clock(post: Any, skew_app_clock: Any) -> None:
    skew_app_clock(SKEW)
    before = database_now()
    post("/test/probe/", {"label": "a"}, key="k")
    after = database_now()
    record = IdempotencyRecord.objects.get()
    assert record.completed_at is not None
    assert before <= record.created_at <= record.completed_at <= after
    assert record.expires_at - record.completed_at == timedelta(hours=24)


def test_the_purge_with_an_app_clock_ahead_keeps_live_records(
    post: Any, skew_app_clock: Any
) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    skew_app_clock(SKEW)
    result = IdempotencyRecord.objects.purge_expired()
    assert result.deleted == 0
    assert post("/test/probe/", {"label": "a"}, key="k")["Idempotent-Replayed"] == "true"


def test_the_purge_with_an_app_clock_behind_removes_expired_records(
    post: Any, skew_app_clock: Any
) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    IdempotencyRecord.objects.update(expires_at=UtcNow())
    skew_app_clock(-SKEW)
    assert IdempotencyRecord.objects.purge_expired().deleted == 1


def test_older_than_is_measured_on_the_database_clock(post: Any, skew_app_clock: Any) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    skew_app_clock(SKEW)
    assert IdempotencyRecord.objects.purge_expired(older_than=timedelta(days=1)).deleted == 0
