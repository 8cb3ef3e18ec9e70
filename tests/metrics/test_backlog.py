"""The purge's and the outbox relay's gauges, as both exporters show them after a pass."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_idempotency.celery.outbox import relay_outbox
from django_idempotency.models import IdempotencyRecord, OutboxMessage
from django_idempotency.models.outbox import OutboxSendError
from tests.celery.test_outbox import app, broker, closed_port
from tests.factories import IdempotencyRecordFactory
from tests.metrics.conftest import Readings

pytestmark = pytest.mark.django_db(transaction=True)

DB = "default"


def both(readings: Readings, name: str, otel_name: str) -> tuple[float, float]:
    return readings.gauge(f"django_idempotency_{name}", otel_name, DB)


def test_the_purge_reports_how_late_it_came_and_how_much_it_found(readings: Readings) -> None:
    now = timezone.now()
    for hours in (1, 5, 30):
        IdempotencyRecordFactory(expires_at=now - timedelta(hours=hours))
    IdempotencyRecordFactory()  # live
    # Kept on purpose: a stripped row still holding its reference is not the purge's backlog.
    IdempotencyRecordFactory(
        state=IdempotencyRecord.State.HELD,
        reference="order:1",
        expires_at=now - timedelta(days=90),
        reference_expires_at=None,
    )
    started = time.time()

    result = IdempotencyRecord.objects.purge_expired()

    assert result.deleted == 3
    lag = both(readings, "purge_lag_seconds", "idempotency.purge.lag")
    oldest = timedelta(hours=30).total_seconds()
    assert oldest <= lag[0] <= oldest + time.time() - started + 1
    assert oldest <= lag[1] <= oldest + time.time() - started + 1
    assert both(readings, "purge_backlog_records", "idempotency.purge.backlog") == (3, 3)
    last = both(readings, "purge_last_pass_timestamp_seconds", "idempotency.purge.last_pass")
    assert started <= last[0] == last[1] <= time.time()


def test_the_relay_reports_its_backlog_also_when_the_broker_is_down(
    readings: Readings, queue: str
) -> None:
    written = timezone.now() - timedelta(minutes=10)
    for number in range(3):
        OutboxMessage.objects.create(
            task_id=f"t{number}", name="shop.ship_order", args=[number], created_at=written
        )
    OutboxMessage.objects.create(task_id="bad", name="x", parked_at=timezone.now())
    started = time.time()

    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    with broker(down, queue), pytest.raises(OutboxSendError):
        relay_outbox(app=app, older_than=0)

    assert both(readings, "outbox_backlog_messages", "idempotency.outbox.backlog") == (3, 3)
    assert both(readings, "outbox_parked_messages", "idempotency.outbox.parked") == (1, 1)
    age = both(readings, "outbox_oldest_age_seconds", "idempotency.outbox.oldest_age")
    for value in age:
        assert 600 <= value <= 600 + time.time() - started + 1
    last = both(readings, "outbox_last_pass_timestamp_seconds", "idempotency.outbox.last_pass")
    assert started <= last[0] == last[1] <= time.time()


def purge_queries(**settings: Any) -> list[str]:
    IdempotencyRecordFactory(expires_at=timezone.now() - timedelta(hours=1))
    with override_settings(**settings), CaptureQueriesContext(connection) as captured:
        IdempotencyRecord.objects.purge_expired()
    return [query["sql"] for query in captured.captured_queries]


def test_the_purge_gauges_cost_one_query_and_none_when_metrics_are_off(otel: Any) -> None:
    off = purge_queries()
    on = purge_queries(IDEMPOTENCY_METRICS=["prometheus", "opentelemetry"])
    assert len(on) == len(off) + 1
    assert [sql for sql in on if sql not in off and "MIN(" in sql.upper()] != []
