"""``store.claim_or_find``: the claim and a replay's lookup in one statement on PostgreSQL, the
two steps elsewhere, and the fallback when the record committed while the claim waited."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.http import HttpResponse
from django.utils import timezone

from django_idempotency.core import store
from django_idempotency.core.engine import perform_once
from django_idempotency.core.operation import Operation
from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

SCOPE = "probe|auth.user:1"


def operation(key: str = "k", fingerprint: str = "f" * 64) -> Operation:
    return Operation(
        database="default",
        scope=SCOPE,
        key=key,
        fingerprint=fingerprint,
        method="POST",
        path="/p/",
        reference=None,
        ttl=timedelta(hours=1),
        lock_timeout=5.0,
    )


def stored(op: Operation) -> None:
    perform_once(op, lambda: HttpResponse(b"{}", status=201, content_type="application/json"))


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_a_new_key_is_claimed() -> None:
    with transaction.atomic():
        outcome = store.claim_or_find(operation(), timezone.now(), event_limit=10)
    assert isinstance(outcome, store.Claimed)
    assert IdempotencyRecord.objects.get().pk == outcome.id


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the claim's transaction is its own, as in a request
def test_a_stored_key_is_found_counted_and_logged_by_the_claims_own_statement() -> None:
    stored(operation())
    with transaction.atomic():
        replay = store.claim_or_find(operation(), timezone.now(), event_limit=10)
        # Found and counted: this transaction carries only bookkeeping, its commit is relaxed.
        assert synchronous_commit() == "off"
    with transaction.atomic():
        mismatch = store.claim_or_find(
            operation(fingerprint="e" * 64), timezone.now(), event_limit=10
        )

    assert isinstance(replay, store.Found)
    assert isinstance(mismatch, store.Found)
    assert (replay.replayable, replay.record.replay_count, replay.record.conflict_count) == (
        True,
        1,
        0,
    )
    assert mismatch.record.conflict_count == 1
    assert sorted(IdempotencyEvent.objects.values_list("kind", flat=True)) == [
        "mismatch",
        "replayed",
    ]
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (1, 1)
    assert synchronous_commit() == "on"


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_claim_that_inserts_keeps_its_commit_durable() -> None:
    stored(operation(key="other"))
    with transaction.atomic():
        outcome = store.claim_or_find(operation(), timezone.now(), event_limit=10)
        assert isinstance(outcome, store.Claimed)
        assert synchronous_commit() == "on"


@pytest.mark.postgres
@pytest.mark.django_db
def test_an_expired_record_is_neither_claimed_nor_found() -> None:
    stored(operation())
    IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    with transaction.atomic():
        outcome = store.claim_or_find(operation(), timezone.now(), event_limit=10)
        assert synchronous_commit() == "on"
    assert outcome is None  # the engine clears it and claims again
    assert IdempotencyRecord.objects.get().replay_count == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_copy_that_waited_for_its_original_falls_back_to_the_lookup() -> None:
    """The claim waits on the original's uncommitted row; the row commits after the claim's
    snapshot was taken, so the statement cannot see it: ``None``, and the separate lookup (a
    statement of its own, a later snapshot) finds, counts and logs it exactly once."""
    original = operation()
    claimed = threading.Event()
    release = threading.Event()

    def first() -> None:
        try:

            def view() -> HttpResponse:
                claimed.set()
                release.wait(10)
                return HttpResponse(b"{}", status=201, content_type="application/json")

            perform_once(original, view)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert claimed.wait(10)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    try:
        with transaction.atomic():
            now = timezone.now()
            outcome = store.claim_or_find(operation(), now, event_limit=10)
            assert outcome is None
            found = store.find_count_and_log(operation(), by="key", now=now, event_limit=10)
    finally:
        timer.cancel()
        release.set()
        thread.join(10)
    assert found is not None
    assert found.replayable
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (1, 0)
    assert list(IdempotencyEvent.objects.values_list("kind", flat=True)) == ["replayed"]


@pytest.mark.django_db
def test_without_the_dialects_one_statement_it_takes_the_two_steps() -> None:
    """SQLite has no data-modifying CTE: the claim alone, and the engine looks up after."""
    stored(operation())
    with transaction.atomic():
        outcome = store.claim_or_find(operation(), timezone.now(), event_limit=10)
    record = IdempotencyRecord.objects.get()
    if connection.vendor == "postgresql":
        assert isinstance(outcome, store.Found)
        assert record.replay_count == 1
    else:
        assert outcome is None
        assert record.replay_count == 0
