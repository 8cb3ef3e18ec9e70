"""The purge routine: batches by primary key, what it keeps, what it reports, and races."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_idempotency.arguments import parse_age
from django_idempotency.core import store
from django_idempotency.core.operation import Operation
from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from django_idempotency.models.purge import PurgeResult
from tests.conftest import race
from tests.testapp.models import OtherDatabaseRecord

State = IdempotencyRecord.State
Kind = IdempotencyEvent.Kind
NOW = timezone.now()
_serial = iter(range(10**9))


def records(
    count: int,
    *,
    expired: bool,
    state: str = State.COMPLETED,
    scope: str = "probe-list|auth.user:1",
    created_at: datetime | None = None,
    using: str = "default",
) -> list[IdempotencyRecord]:
    """Bulk-insert ``count`` records; expired ones ran out an hour ago, live ones in a day."""
    expires_at = NOW - timedelta(hours=1) if expired else NOW + timedelta(days=1)
    created = created_at or expires_at - timedelta(days=1)
    rows = [
        IdempotencyRecord(
            scope=scope,
            key=f"key-{next(_serial)}",
            fingerprint="f" * 64,
            state=state,
            request_method="POST",
            request_path="/test/probe/",
            response_status=201 if state == State.COMPLETED else None,
            response_body=b'{"ok": true}',
            created_at=created,
            expires_at=expires_at,
        )
        for _ in range(count)
    ]
    return IdempotencyRecord.objects.using(using).bulk_create(rows, batch_size=2000)


def events_for(rows: list[IdempotencyRecord], *, kind: str = Kind.REPLAYED) -> None:
    IdempotencyEvent.objects.bulk_create(
        [
            IdempotencyEvent(
                at=record.created_at,
                kind=kind,
                scope=record.scope,
                key=record.key,
                fingerprint=record.fingerprint,
                record_id=record.pk,
                expires_at=record.expires_at,
            )
            for record in rows
        ],
        batch_size=2000,
    )


def orphan_events(count: int, *, expired: bool, scope: str = "probe-list|auth.user:1") -> None:
    """In-flight refusals: no record link, kept until their own expiry."""
    expires_at = NOW - timedelta(minutes=1) if expired else NOW + timedelta(hours=1)
    IdempotencyEvent.objects.bulk_create(
        IdempotencyEvent(
            at=expires_at - timedelta(days=1),
            kind=Kind.IN_FLIGHT,
            scope=scope,
            key=f"waiting-{next(_serial)}",
            fingerprint="e" * 64,
            expires_at=expires_at,
        )
        for _ in range(count)
    )


@pytest.mark.django_db
def test_many_mixed_rows_lose_exactly_the_expired_ones_in_batches() -> None:
    expired = records(20_000, expired=True)
    live = records(5_000, expired=False)
    in_flight = records(300, expired=True, state=State.IN_FLIGHT)
    events_for(expired[:3_000])
    events_for(live[:700], kind=Kind.MISMATCH)
    orphan_events(200, expired=True)
    orphan_events(50, expired=False)
    seen: list[PurgeResult] = []

    result = IdempotencyRecord.objects.purge_expired(batch_size=1_000, progress=seen.append)

    assert result.deleted == 20_000
    assert result.events_deleted == 3_000 + 200
    # 20 batches of records, then one of orphaned events.
    assert result.batches == 21
    assert result.seconds > 0
    assert not result.dry_run
    assert result.database == "default"
    assert [p.batches for p in seen] == list(range(1, 22))
    assert [p.deleted for p in seen[:20]] == [1_000 * n for n in range(1, 21)]
    assert seen[-1].deleted == 20_000
    assert seen[-1].events_deleted == 3_200
    remaining = set(IdempotencyRecord.objects.values_list("pk", flat=True))
    assert remaining == {r.pk for r in live} | {r.pk for r in in_flight}
    assert IdempotencyEvent.objects.filter(kind=Kind.MISMATCH).count() == 700
    assert IdempotencyEvent.objects.filter(kind=Kind.IN_FLIGHT).count() == 50
    assert IdempotencyEvent.objects.count() == 750

    again = IdempotencyRecord.objects.purge_expired(batch_size=1_000)
    assert (again.deleted, again.events_deleted, again.batches) == (0, 0, 0)


@pytest.mark.django_db
def test_each_batch_is_one_delete_per_table_by_primary_key() -> None:
    rows = records(25, expired=True)
    events_for(rows)

    with CaptureQueriesContext(connection) as queries:
        result = IdempotencyRecord.objects.purge_expired(batch_size=10)

    assert (result.deleted, result.events_deleted, result.batches) == (25, 25, 3)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 6
    if connection.vendor == "mysql":
        # Joined to the batch's primary keys (models/batches.py): an IN list gets planned as a
        # scan that waits on rows live requests hold.
        tables = [IdempotencyEvent._meta.db_table, IdempotencyRecord._meta.db_table] * 3
        assert [
            sql.startswith("DELETE t FROM JSON_TABLE(") and f"STRAIGHT_JOIN `{table}` AS t" in sql
            for sql, table in zip(deletes, tables, strict=True)
        ] == [True] * 6
        return
    records_by_pk = f'DELETE FROM "{IdempotencyRecord._meta.db_table}" WHERE '
    events_by_record = f'DELETE FROM "{IdempotencyEvent._meta.db_table}" WHERE '
    assert [
        sql.startswith(events_by_record) and '."record_id" IN (' in sql for sql in deletes[::2]
    ] == [True] * 3
    assert [sql.startswith(records_by_pk) and '."id" IN (' in sql for sql in deletes[1::2]] == [
        True
    ] * 3


@pytest.mark.django_db(databases=["default", "other"])
def test_purges_the_database_it_is_given_and_only_that_one() -> None:
    records(30, expired=True, using="other")
    live_other = records(2, expired=False, using="other")
    on_default = records(5, expired=True)

    result = IdempotencyRecord.objects.using("other").purge_expired(batch_size=7)

    assert (result.database, result.deleted, result.batches) == ("other", 30, 5)
    remaining = IdempotencyRecord.objects.using("other").values_list("pk", flat=True)
    assert set(remaining) == {r.pk for r in live_other}
    assert IdempotencyRecord.objects.using("default").count() == len(on_default)


@pytest.mark.django_db(databases=["default", "other"])
def test_a_proxy_routed_elsewhere_purges_the_database_its_router_names() -> None:
    # The router is asked about the model the purge was called on, not the store's record.
    records(3, expired=True, using="other")
    on_default = records(2, expired=True)

    result = OtherDatabaseRecord.objects.purge_expired()

    assert (result.database, result.deleted) == ("other", 3)
    assert not IdempotencyRecord.objects.using("other").exists()
    assert IdempotencyRecord.objects.using("default").count() == len(on_default)


@pytest.mark.django_db
def test_dry_run_counts_and_deletes_nothing() -> None:
    expired = records(1_500, expired=True)
    records(40, expired=False)
    events_for(expired[:100])
    orphan_events(7, expired=True)

    result = IdempotencyRecord.objects.purge_expired(dry_run=True, batch_size=100)

    assert result.dry_run
    assert (result.deleted, result.events_deleted, result.batches) == (1_500, 107, 0)
    assert IdempotencyRecord.objects.count() == 1_540
    assert IdempotencyEvent.objects.count() == 107


@pytest.mark.django_db
def test_older_than_also_removes_old_records_whose_ttl_has_not_run_out() -> None:
    old = records(30, expired=False, created_at=NOW - timedelta(days=10))
    recent = records(20, expired=False, created_at=NOW - timedelta(days=2))
    events_for(old)
    events_for(recent)

    result = IdempotencyRecord.objects.purge_expired(older_than=timedelta(days=7))

    assert (result.deleted, result.events_deleted) == (30, 30)
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in recent}
    assert IdempotencyEvent.objects.count() == 20


@pytest.mark.django_db
def test_scope_prefix_limits_records_and_orphaned_events() -> None:
    payments = records(12, expired=True, scope="payment-list|auth.user:1")
    orders = records(8, expired=True, scope="order-list|auth.user:1")
    orphan_events(3, expired=True, scope="payment-list|auth.user:1")
    orphan_events(4, expired=True, scope="order-list|auth.user:1")

    result = IdempotencyRecord.objects.purge_expired(scope="payment-list|")

    assert (result.deleted, result.events_deleted) == (12, 3)
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in orders}
    assert IdempotencyEvent.objects.count() == 4
    assert not IdempotencyRecord.objects.filter(pk__in=[r.pk for r in payments]).exists()


@pytest.mark.django_db
def test_purging_a_queryset_touches_only_its_expired_rows() -> None:
    expired = records(10, expired=True)
    live = records(3, expired=False)
    chosen = [r.pk for r in expired[:4]] + [r.pk for r in live]

    result = IdempotencyRecord.objects.filter(pk__in=chosen).purge_expired()

    assert result.deleted == 4
    assert IdempotencyRecord.objects.count() == 9
    assert IdempotencyRecord.objects.filter(pk__in=[r.pk for r in live]).count() == 3


@pytest.mark.django_db
def test_events_left_behind_by_a_purged_record_are_swept_once_due() -> None:
    gone = records(2, expired=True)
    events_for(gone)
    # Simulate a replay logged just after its record was purged: the link dangles.
    IdempotencyRecord.objects.filter(pk__in=[r.pk for r in gone])._raw_delete("default")
    assert IdempotencyEvent.objects.count() == 2

    result = IdempotencyRecord.objects.purge_expired()

    assert (result.deleted, result.events_deleted) == (0, 2)
    assert not IdempotencyEvent.objects.exists()


@pytest.mark.django_db
def test_live_records_keep_due_events_until_they_go_themselves() -> None:
    live = records(1, expired=False)
    # Linked events are deleted with their record, never before it.
    IdempotencyEvent.objects.create(
        kind=Kind.REPLAYED,
        scope=live[0].scope,
        key=live[0].key,
        fingerprint="f" * 64,
        record=live[0],
        expires_at=NOW - timedelta(seconds=1),
    )

    assert IdempotencyRecord.objects.purge_expired().events_deleted == 0
    assert IdempotencyEvent.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("size", [0, -5])
def test_a_batch_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        IdempotencyRecord.objects.purge_expired(batch_size=size)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90m", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
        ("2w", timedelta(weeks=2)),
        (" 1D 6H ", timedelta(days=1, hours=6)),
    ],
)
def test_parse_age(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "7d3", "-1d", "0h", "1.5d", "7 days"])
def test_parse_age_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="age"):
        parse_age(text)


# -- PostgreSQL: locks, in-flight claims and two purges at once ---------------------------


@pytest.fixture
def held() -> Iterator[Any]:
    """Run ``hold(work)`` in a thread that keeps its transaction open until the test ends."""
    release = threading.Event()
    threads: list[threading.Thread] = []

    def hold(work: Any) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with transaction.atomic():
                    work()
                    ready.set()
                    release.wait(timeout=60)
                    transaction.set_rollback(True)
            except BaseException as exc:  # pragma: no cover - reported below
                failure.append(exc)
                ready.set()
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)
        assert ready.wait(timeout=10)
        assert not failure, failure

    yield hold
    release.set()
    for thread in threads:
        thread.join(timeout=10)


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_purge_skips_in_flight_claims_and_locked_rows_without_waiting(held: Any) -> None:
    long_ago = NOW - timedelta(days=30)
    expired = records(50, expired=True)
    locked = expired[0]

    # A request in flight whose claim is old and already past its TTL: a slow view.
    def in_flight_claim() -> None:
        slow = Operation(
            database="default",
            scope="probe-list|auth.user:1",
            key="slow-request",
            fingerprint="a" * 64,
            reference=None,
            method="POST",
            path="/test/probe/",
            ttl=timedelta(seconds=1),
            lock_timeout=1,
        )
        store.claim(slow, long_ago)

    # A live request busy with an expired record (the engine removing it to reclaim the key).
    def lock_row() -> None:
        list(IdempotencyRecord.objects.select_for_update().filter(pk=locked.pk))

    held(in_flight_claim)
    held(lock_row)

    started = time.monotonic()
    result = IdempotencyRecord.objects.purge_expired(older_than=timedelta(days=1), batch_size=7)
    elapsed = time.monotonic() - started

    assert result.deleted == 49
    assert elapsed < 5, "the purge waited for a lock"
    assert list(IdempotencyRecord.objects.values_list("pk", flat=True)) == [locked.pk]


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_two_purges_racing_split_the_work_without_errors() -> None:
    rows = records(20_000, expired=True)
    events_for(rows[::3])
    keep = records(500, expired=False)

    def purge(_: int) -> PurgeResult:
        return IdempotencyRecord.objects.purge_expired(batch_size=250)

    first, second = race(2, purge)

    assert first.deleted + second.deleted == 20_000
    assert first.events_deleted + second.events_deleted == len(rows[::3])
    assert first.deleted > 0, (first, second)
    assert second.deleted > 0, (first, second)
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in keep}
    assert not IdempotencyEvent.objects.exists()
