"""The purge's batch delete relies on Django's private ``QuerySet._raw_delete``: these tests
pin what it must keep doing on every supported Django (tox runs them on each one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import post_delete, pre_delete
from django.test.utils import CaptureQueriesContext

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from django_idempotency.models.batches import delete_rows
from tests.operations.test_purge import events_for, records


@pytest.fixture
def delete_receivers() -> Iterator[list[Any]]:
    """A project that listens to delete signals: QuerySet.delete() would then fetch every row
    (stored bodies included) to send them; the purge must not."""
    heard: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        heard.append(instance)

    for signal in (pre_delete, post_delete):
        for model in (IdempotencyRecord, IdempotencyEvent):
            signal.connect(receiver, sender=model, weak=False)
    yield heard
    for signal in (pre_delete, post_delete):
        for model in (IdempotencyRecord, IdempotencyEvent):
            signal.disconnect(receiver, sender=model)


@pytest.mark.django_db
def test_raw_delete_is_one_delete_that_returns_its_count(delete_receivers: list[Any]) -> None:
    rows = records(5, expired=True)
    kept = records(2, expired=True)
    ids = [row.pk for row in rows]

    with CaptureQueriesContext(connection) as queries:
        deleted = delete_rows(IdempotencyRecord, ids, "default")

    assert deleted == 5
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["DELETE"]
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in kept}
    assert delete_receivers == []


@pytest.mark.django_db
def test_the_purge_reads_no_stored_body_even_with_delete_receivers(
    delete_receivers: list[Any],
) -> None:
    rows = records(12, expired=True)
    events_for(rows)

    with CaptureQueriesContext(connection) as queries:
        result = IdempotencyRecord.objects.purge_expired(batch_size=5)

    assert (result.deleted, result.events_deleted, result.batches) == (12, 12, 3)
    assert not IdempotencyRecord.objects.exists()
    assert not IdempotencyEvent.objects.exists()
    assert delete_receivers == []
    assert not [q["sql"] for q in queries.captured_queries if "response_body" in q["sql"]]
    deletes = [q for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 6  # one per table per batch
