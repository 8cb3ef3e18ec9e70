"""``django_idempotency.once``: any function at most once per (scope, key), without HTTP."""

from __future__ import annotations

import runpy
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

from django_idempotency.core.references import storable
from django_idempotency.exceptions import (
    InvalidKey,
    KeyMismatch,
    ReferenceConflict,
    RequestInFlight,
)
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import call_fingerprint, once, perform, run_once
from tests.e2e.faults.figures import E2E, measure
from tests.testapp.models import Execution


def executions(label: str) -> int:
    return Execution.objects.filter(label=label).count()


@once(key=lambda label, **kwargs: f"import-{label}")
def record_import(label: str, *, rows: int = 1) -> dict[str, Any]:
    execution = Execution.objects.create(label=label)
    return {"execution": execution.pk, "rows": rows}


@pytest.mark.django_db
def test_the_second_call_replays_the_stored_result_without_running() -> None:
    first = record_import("a", rows=3)
    second = record_import("a", rows=3)

    assert first == second == {"execution": first["execution"], "rows": 3}
    assert executions("a") == 1
    record = IdempotencyRecord.objects.get()
    assert record.scope == f"{__name__}.record_import"
    assert record.request_method == "CALL"
    assert record.replay_count == 1


@pytest.mark.django_db
def test_perform_says_whether_the_result_was_replayed() -> None:
    def make() -> list[int]:
        return [Execution.objects.create(label="p").pk]

    options: dict[str, Any] = {"scope": "jobs", "key": "k1", "fingerprint": "f" * 64}
    assert perform(make, **options).replayed is False
    again = perform(make, **options)
    assert again.replayed is True
    assert executions("p") == 1


@pytest.mark.django_db
def test_the_same_key_with_other_arguments_is_refused() -> None:
    record_import("b", rows=1)
    with pytest.raises(KeyMismatch):
        record_import("b", rows=2)
    assert executions("b") == 1


@pytest.mark.django_db
def test_an_exception_rolls_back_the_writes_and_releases_the_key() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        Execution.objects.create(label="flaky")
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("downstream unavailable")
        return "done"

    with pytest.raises(RuntimeError):
        run_once(flaky, scope="jobs", key="flaky")
    assert executions("flaky") == 0
    assert not IdempotencyRecord.objects.exists()

    assert run_once(flaky, scope="jobs", key="flaky") == "done"
    assert run_once(flaky, scope="jobs", key="flaky") == "done"
    assert len(attempts) == 2
    assert executions("flaky") == 1


@pytest.mark.django_db
def test_a_result_that_is_not_json_rolls_back() -> None:
    def unstorable() -> object:
        Execution.objects.create(label="set")
        return {1, 2}

    with pytest.raises(TypeError):
        run_once(unstorable, scope="jobs", key="set")
    assert executions("set") == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_keys_and_scopes_are_validated_like_headers() -> None:
    with pytest.raises(InvalidKey):
        run_once(lambda: 1, scope="jobs", key="é")
    with pytest.raises(InvalidKey):
        run_once(lambda: 1, scope="jobs", key="x" * 256)
    with pytest.raises(ValueError, match="scope"):
        run_once(lambda: 1, scope="s" * 256, key="k")
    # A key function that returns None (untyped callers): refused, also under python -O.
    with pytest.raises(InvalidKey):
        once(key=lambda order: None, scope="jobs")(lambda order: order)(1)
    assert not IdempotencyRecord.objects.exists()


def test_the_fingerprint_is_canonical_and_refuses_lossy_arguments() -> None:
    assert call_fingerprint("f", (1,), {"a": 1, "b": 2}) == call_fingerprint(
        "f", (1,), {"b": 2, "a": 1}
    )
    # Numbers keep their spelling, as in request bodies: a false mismatch is the safe side.
    assert call_fingerprint("f", (1,), {}) != call_fingerprint("f", (1.0,), {})
    assert call_fingerprint("f", (1,), {}) != call_fingerprint("f", ("1",), {})
    assert call_fingerprint("f", (1,), {}) != call_fingerprint("g", (1,), {})
    with pytest.raises(TypeError):
        call_fingerprint("f", (object(),), {})


# -- real threads on PostgreSQL ----------------------------------------------------------------


def storm(copies: int, call: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(copies)

    def one(index: int) -> Any:
        try:
            barrier.wait(timeout=10)
            return call(index)
        except Exception as exc:  # the test inspects what each copy got
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(one, range(copies)))


def slow_job(label: str, seconds: float) -> Callable[[], int]:
    def job() -> int:
        execution = Execution.objects.create(label=label)
        time.sleep(seconds)
        return execution.pk

    return job


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_a_storm_of_copies_runs_once_and_all_get_the_result() -> None:
    with measure(
        "run_once: one key, 16 threads",
        section=E2E,
        what="run_once() outside HTTP: 16 threads, each on its own PostgreSQL connection, run "
        "one slow function (300 ms) under one key at the same moment.",
    ) as sheet:
        results = storm(16, lambda i: run_once(slow_job("storm", 0.3), scope="jobs", key="storm"))
        sheet.requests, sheet.operations = 16, 1
        sheet.lost = int(executions("storm") == 0)
        sheet.duplicated = max(0, executions("storm") - 1)

        assert executions("storm") == 1
        assert len(set(results)) == 1, results
        assert isinstance(results[0], int)
        assert IdempotencyRecord.objects.get().replay_count == 15


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_a_storm_over_many_keys_has_no_duplicates() -> None:
    keys, copies = 10, 40

    def call(index: int) -> Any:
        return run_once(slow_job(f"k{index % keys}", 0.05), scope="jobs", key=f"k{index % keys}")

    with measure(
        "run_once: 10 keys, 40 threads",
        section=E2E,
        what=f"run_once() outside HTTP: {copies} threads at once over {keys} keys (4 copies "
        "each), each thread on its own PostgreSQL connection.",
    ) as sheet:
        results = storm(copies, call)
        counts = [executions(f"k{i}") for i in range(keys)]
        sheet.requests, sheet.operations = copies, keys
        sheet.lost = counts.count(0)
        sheet.duplicated = sum(max(0, count - 1) for count in counts)

        assert not [r for r in results if isinstance(r, Exception)], results
        assert counts == [1] * keys
        assert len(set(results)) == keys


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_a_copy_gives_up_after_lock_timeout_while_the_original_runs() -> None:
    running, done = threading.Event(), threading.Event()

    def held_job() -> int:
        execution = Execution.objects.create(label="held")
        running.set()
        assert done.wait(timeout=30), "the copy never returned"
        return execution.pk

    def call(index: int) -> Any:
        if index == 0:
            return run_once(held_job, scope="jobs", key="held")
        assert running.wait(timeout=30)  # the original holds the key until the copy gave up
        try:
            return run_once(slow_job("held", 0), scope="jobs", key="held", lock_timeout=0.3)
        finally:
            done.set()

    original, copy = storm(2, call)

    assert isinstance(original, int)
    assert isinstance(copy, RequestInFlight)
    assert executions("held") == 1
    # Once the original committed, the copy's retry gets its result.
    assert run_once(slow_job("held", 0), scope="jobs", key="held") == original


def test_a_function_of_a_script_run_as_main_needs_a_scope(tmp_path: Any) -> None:
    # Two scripts run as programs are both "__main__": "__main__.process" names neither.
    script = tmp_path / "nightly.py"
    script.write_text(
        "from django_idempotency.once import once\n"
        "@once(key=lambda batch: batch)\n"
        "def process(batch):\n"
        "    return batch\n"
    )
    with pytest.raises(ValueError, match="__main__"):
        runpy.run_path(str(script), run_name="__main__")

    named = tmp_path / "named.py"
    named.write_text(
        "from django_idempotency.once import once\n"
        "@once(key=lambda batch: batch, scope='nightly.process')\n"
        "def process(batch):\n"
        "    return batch\n"
    )
    assert callable(runpy.run_path(str(named), run_name="__main__")["process"])


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db
def test_references_that_share_their_first_255_characters_are_two_references() -> None:
    # Cut to the column's 255 characters they would be one: the second call found a
    # reference it could not see and came back as "in flight" for ever.
    stem = "order:" + "x" * 260
    first = perform(lambda: 1, scope="refs", key="k1", fingerprint="f", reference=stem + "1")
    second = perform(lambda: 2, scope="refs", key="k2", fingerprint="f", reference=stem + "2")

    assert (first.result, second.result) == (1, 2)
    with pytest.raises(ReferenceConflict):
        perform(lambda: 3, scope="refs", key="k3", fingerprint="g", reference=stem + "1")
    held = IdempotencyRecord.objects.get(key="k1").reference
    assert held == storable(stem + "1")
    assert held is not None
    assert held.startswith("sha256:")


@pytest.mark.django_db
def test_a_reference_with_a_nul_is_held_by_its_digest_and_a_bad_scope_is_refused() -> None:
    outcome = perform(lambda: 1, scope="refs", key="k1", fingerprint="f", reference="a\x00b")
    assert outcome.result == 1
    assert IdempotencyRecord.objects.get(key="k1").reference == storable("a\x00b")
    with pytest.raises(ReferenceConflict):
        perform(lambda: 2, scope="refs", key="k2", fingerprint="g", reference="a\x00b")

    with pytest.raises(ValueError, match="scope"):
        perform(lambda: 1, scope="refs\x00", key="k3", fingerprint="f")
    number: Any = 42
    with pytest.raises(TypeError, match="reference"):
        perform(lambda: 1, scope="refs", key="k4", fingerprint="f", reference=number)
    assert IdempotencyRecord.objects.count() == 1
