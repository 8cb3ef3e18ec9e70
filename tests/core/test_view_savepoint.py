"""The view's own savepoint (``engine._view_savepoint``): what the view does to the transaction
stays its own, as under a nested ``atomic()``, without the RELEASE round trip."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, InternalError, connection, transaction
from django.http import HttpResponse

from django_idempotency.core.engine import perform_once
from django_idempotency.core.operation import Operation
from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

# Real transactions: on_commit hooks run, and what a request leaves is what it committed.
pytestmark = pytest.mark.django_db(transaction=True)


def operation(key: str = "k") -> Operation:
    return Operation(
        database="default",
        scope="probe|auth.user:1",
        key=key,
        fingerprint="f" * 64,
        method="POST",
        path="/p/",
        reference=None,
        ttl=timedelta(hours=1),
        lock_timeout=5.0,
    )


def created() -> HttpResponse:
    return HttpResponse(b"{}", status=201, content_type="application/json")


def test_a_view_that_marks_a_rollback_loses_its_writes_and_hooks_and_its_answer_is_stored() -> None:
    hooks: list[str] = []

    def view() -> HttpResponse:
        Execution.objects.create(label="undone")
        transaction.on_commit(lambda: hooks.append("undone"))
        transaction.set_rollback(True)  # as DRF's exception handler does under ATOMIC_REQUESTS
        return created()

    assert perform_once(operation(), view).status_code == 201
    assert not Execution.objects.exists()
    assert hooks == []
    assert IdempotencyRecord.objects.get().state == IdempotencyRecord.State.COMPLETED
    assert not connection.in_atomic_block
    assert connection.savepoint_ids == []


def test_an_integrity_error_the_view_caught_undoes_only_the_view() -> None:
    def view() -> HttpResponse:
        first = Execution.objects.create(label="first")
        with contextlib.suppress(IntegrityError):  # Django marks the transaction for rollback
            Execution.objects.create(pk=first.pk, label="clash")
        return created()

    assert perform_once(operation(), view).status_code == 201
    assert not Execution.objects.exists()
    assert IdempotencyRecord.objects.get().response_status == 201


def test_a_view_that_succeeds_keeps_its_writes_and_its_hooks_run_after_the_commit() -> None:
    hooks: list[int] = []

    def view() -> HttpResponse:
        execution = Execution.objects.create(label="kept")
        transaction.on_commit(lambda: hooks.append(Execution.objects.count()))
        with transaction.atomic():  # a block of the view's own, rolled back by the view
            Execution.objects.create(label="inner")
            transaction.set_rollback(True)
        assert Execution.objects.filter(pk=execution.pk).exists()
        return created()

    perform_once(operation(), view)
    assert list(Execution.objects.values_list("label", flat=True)) == ["kept"]
    assert hooks == [1]
    assert connection.savepoint_ids == []


def test_a_view_that_raises_leaves_nothing() -> None:
    def view() -> HttpResponse:
        Execution.objects.create(label="gone")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        perform_once(operation(), view)
    assert not Execution.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    assert connection.savepoint_ids == []
    assert not connection.in_atomic_block


@pytest.mark.concurrent_db
def test_a_view_whose_connection_died_and_that_marked_a_rollback_still_answers() -> None:
    """Rolling back to the view's savepoint fails on a dead connection; atomic() then leaves the
    rollback mark to the enclosing block rather than raising over the view's answer."""

    def view() -> HttpResponse:
        Execution.objects.create(label="lost")
        kill = (
            "SELECT pg_terminate_backend(pg_backend_pid())"
            if connection.vendor == "postgresql"
            else "KILL CONNECTION_ID()"
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(kill)
        except DatabaseError:
            transaction.set_rollback(True)
        return HttpResponse(status=503)

    assert perform_once(operation(), view).status_code == 503
    connection.close()
    assert not Execution.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("status", [201, 503])
def test_a_failed_statement_the_view_swallowed_fails_the_request_as_under_atomic(
    status: int,
) -> None:
    """A raw cursor's error marks nothing, yet PostgreSQL then refuses every statement: a
    nested atomic() raises that failure on leaving the view, whether or not the answer is one
    to store; the key is free again."""
    calls: list[str] = []

    def view() -> HttpResponse:
        calls.append("ran")
        Execution.objects.create(label="lost")
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT 1/0")
        return HttpResponse(status=status)

    with pytest.raises(InternalError, match="current transaction is aborted"):
        perform_once(operation(), view)
    assert calls == ["ran"]
    assert not Execution.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    assert connection.savepoint_ids == []
    assert not connection.in_atomic_block
