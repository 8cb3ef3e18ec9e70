"""Attacks on issue 12: run-once fingerprints, derived keys, the operation context variable,
nested operations and the example gateway's deduplication under concurrent calls."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import pytest

from django_idempotency.core.derived_keys import NoCurrentOperation, derive_key, hmac_key
from django_idempotency.core.operation import current_operation
from django_idempotency.exceptions import KeyMismatch
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import call_fingerprint, once, perform, run_once
from example_project.shop.models import GatewayCharge
from tests.conftest import race
from tests.testapp.models import Execution

PRINTABLE = {chr(code) for code in range(0x21, 0x7F)}


# -- the call fingerprint ------------------------------------------------------------------


def test_dict_keys_that_json_would_turn_into_the_same_string_are_refused() -> None:
    # json.dumps writes {1: "a"} and {"1": "a"} (and {True: 1} / {"true": 1}) identically:
    # two calls the function can tell apart would share a fingerprint, a false match.
    with pytest.raises(TypeError):
        call_fingerprint("f", ({1: "a"},), {})
    with pytest.raises(TypeError):
        call_fingerprint("f", ([{"x": {True: 1}}],), {})
    with pytest.raises(TypeError):
        call_fingerprint("f", (), {"options": {None: 1}})
    assert call_fingerprint("f", ({"1": "a"},), {}) == call_fingerprint("f", ({"1": "a"},), {})


@pytest.mark.django_db
def test_a_call_with_integer_dict_keys_never_replays_a_string_keyed_call() -> None:
    @once(key=lambda table: "import", scope="load")
    def load(table: dict[Any, str]) -> list[str]:
        Execution.objects.create(label="load")
        return sorted(type(name).__name__ for name in table)

    assert load({"1": "a"}) == ["str"]
    with pytest.raises((TypeError, KeyMismatch)):
        load({1: "a"})
    assert Execution.objects.filter(label="load").count() == 1


@pytest.mark.django_db
def test_two_local_functions_with_one_qualified_name_never_share_results() -> None:
    # Made by one factory, both are "importer.<locals>.run": the default scope would be the
    # same for two different operations, and the second would replay the first's result.
    def importer(source: str) -> Any:
        @once(key=lambda day: day)
        def run(day: str) -> str:
            Execution.objects.create(label=source)
            return source

        return run

    with pytest.raises(ValueError, match="needs a scope"):
        importer("bank-a")
    assert not Execution.objects.exists()


def test_bytes_and_sets_are_refused_rather_than_approximated() -> None:
    with pytest.raises(TypeError):
        call_fingerprint("f", (b"1",), {})
    with pytest.raises(TypeError):
        call_fingerprint("f", ({1},), {})
    with pytest.raises(ValueError, match="JSON compliant"):
        call_fingerprint("f", (float("nan"),), {})


# -- derived keys -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_released_key_reused_with_other_arguments_derives_another_downstream_key() -> None:
    # The first run called the gateway with its derived key, then died (the key is released).
    # The same key then comes back with another payload: if it derived the same key, a gateway
    # that deduplicates by key would answer with the first payload's charge (a false match).
    seen: list[str] = []

    def pay(amount: str) -> Any:
        def run() -> str:
            seen.append(derive_key("charge"))
            if len(seen) == 1:
                raise ConnectionError("died after the gateway charged")
            return seen[-1]

        return perform(
            run, scope="payments", key="k", fingerprint=call_fingerprint("pay", (amount,), {})
        )

    with pytest.raises(ConnectionError):
        pay("10.00")
    pay("99.00")
    assert seen[0] != seen[1]


@pytest.mark.django_db
def test_the_same_arguments_derive_the_same_key_on_a_retry() -> None:
    seen: list[str] = []

    def run() -> str:
        seen.append(derive_key("charge"))
        if len(seen) == 1:
            raise ConnectionError
        return seen[-1]

    options: dict[str, Any] = {"scope": "payments", "key": "k", "fingerprint": "f" * 64}
    with pytest.raises(ConnectionError):
        perform(run, **options)
    perform(run, **options)
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    "label",
    ["", "charge\x00", "é" * 10_000, '"],["', "\ud800", "charge\r\nX-Evil: 1"],
)
def test_any_label_gives_a_short_printable_key_that_hides_the_client_key(label: str) -> None:
    key = hmac_key("scope", "client-secret-key", label, "f" * 64)
    assert len(key) <= 255
    assert set(key) <= PRINTABLE
    assert "client-secret-key" not in key


def test_separators_inside_a_label_cannot_shift_into_the_key() -> None:
    assert hmac_key("s", 'k","x', "y", "f") != hmac_key("s", "k", 'x","y', "f")
    assert hmac_key("s", "k", "a", 'b","c') != hmac_key("s", "k", 'a","b', "c")


# -- the operation's context variable -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_thread_started_inside_an_operation_cannot_derive_its_keys() -> None:
    outcome: list[Any] = []

    def job() -> str:
        def worker() -> None:
            try:
                outcome.append(derive_key("charge"))
            except NoCurrentOperation as exc:
                outcome.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        return derive_key("charge")

    run_once(job, scope="jobs", key="t")
    assert isinstance(outcome[0], NoCurrentOperation)
    assert current_operation() is None


@pytest.mark.django_db
def test_an_operation_that_raised_leaves_no_operation_behind() -> None:
    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        run_once(fail, scope="jobs", key="gone")
    assert current_operation() is None
    with pytest.raises(NoCurrentOperation):
        derive_key("charge")


# -- nested operations ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_nested_failure_releases_only_the_inner_key_and_keeps_the_outer_writes() -> None:
    keys: dict[str, str] = {}

    def inner() -> None:
        keys["inner"] = derive_key("x")
        Execution.objects.create(label="inner")
        raise RuntimeError("inner failed")

    def outer() -> str:
        keys["outer-before"] = derive_key("x")
        Execution.objects.create(label="outer")
        with pytest.raises(RuntimeError):
            run_once(inner, scope="inner", key="k")
        keys["outer-after"] = derive_key("x")
        return "ok"

    assert run_once(outer, scope="outer", key="k") == "ok"
    assert keys["outer-before"] == keys["outer-after"] != keys["inner"]
    assert list(Execution.objects.values_list("label", flat=True)) == ["outer"]
    assert list(IdempotencyRecord.objects.values_list("scope", flat=True)) == ["outer"]


@pytest.mark.django_db
def test_an_outer_failure_rolls_back_the_inner_stored_result() -> None:
    def outer() -> None:
        run_once(lambda: Execution.objects.create(label="inner").pk, scope="inner", key="k")
        raise RuntimeError("outer failed after the inner committed its savepoint")

    with pytest.raises(RuntimeError):
        run_once(outer, scope="outer", key="k")
    # No inner result may replay without the writes it stands for.
    assert not Execution.objects.exists()
    assert not IdempotencyRecord.objects.exists()


# -- the example gateway under concurrent calls with one derived key ------------------------


@pytest.mark.drf  # the example gateway declines with DRF's APIException
@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_concurrent_charges_with_one_key_create_one_charge() -> None:
    from example_project.shop import gateway

    copies = 8

    def one(_index: int) -> str:
        return gateway.charge(Decimal("25.00"), order_id=7, idempotency_key="idk_same")

    charge_ids = set(race(copies, one))

    assert len(charge_ids) == 1
    assert GatewayCharge.objects.count() == 1
