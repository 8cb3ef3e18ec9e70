"""Hypothesis fuzz of the doors without HTTP: ``IdempotentTask`` run eagerly (``apply()``) and
``once``/``perform``, with every kind of argument kombu's JSON carries (text with NUL, lone
surrogates and non-BMP characters, huge integers, non-finite floats, ``Decimal``, dates and times
with and without a zone, ``UUID``, bytes, nested lists and dictionaries, keys of odd kinds), and
keys, scopes and references of any text and length.

Whatever arrives: a run, or one of the documented refusals (``InvalidKey``, ``TypeError`` /
``ValueError`` for what cannot be stored or sent, ``KeyMismatch``, ``ReferenceConflict``).
Never a replay of other arguments, always a replay of the same ones, also in the form a worker
receives them (decoded from the message), and a reference is one reference only with itself.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kombu.utils.json import dumps as kombu_dumps
from kombu.utils.json import loads as kombu_loads

from django_idempotency.celery.tasks import IdempotentTask
from django_idempotency.core.keys import MAX_KEY_LENGTH
from django_idempotency.exceptions import InvalidKey, KeyMismatch, ReferenceConflict
from django_idempotency.once import once, perform
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Refusals a door may answer; anything else raised is a defect.
REFUSALS = (InvalidKey, KeyMismatch, ReferenceConflict, TypeError, ValueError)

# -- what kombu's JSON carries -------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "\ud83d\ude00",  # a surrogate pair as two code points ...
    "\U0001f600",  # ... and the one character JSON's escapes make of it
    "\U0010ffff",
    "\ufeff",
    "\u2028",
    '"',
    "\\",
    "sha256:" + "0" * 64,
    "é" * 300,
]
HUGE_INTEGERS = [2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**300]
texts = st.one_of(
    st.sampled_from(HOSTILE_TEXT),
    st.text(st.characters(exclude_categories=()), max_size=12),
)
zones = st.one_of(
    st.none(),
    st.just(timezone.utc),
    st.timezones(),
    st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
scalars = st.one_of(
    texts,
    st.integers(),
    st.sampled_from(HUGE_INTEGERS),
    st.floats(),  # nan, inf, -0.0 included
    st.decimals(),  # NaN, sNaN, Infinity included
    st.booleans(),
    st.none(),
    st.datetimes(timezones=zones),
    st.dates(),
    st.times(timezones=zones),
    st.uuids(),
    st.binary(max_size=6),
)
odd_keys = st.one_of(
    texts,
    st.integers(-2, 2),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.tuples(st.integers(0, 2)),
)
sendable_arguments = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(texts, inner, max_size=3),
    ),
    max_leaves=6,
)


#: Mostly what a broker carries; sometimes a dictionary with keys that are not text, or an
#: integer with more digits than Python converts to text (no JSON carries it).
def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


unsendable = st.one_of(
    st.dictionaries(odd_keys, sendable_arguments, min_size=1, max_size=2),
    st.integers(4300, 4310).map(lambda digits: -(10**digits)),
)
argument_lists = st.one_of(
    st.lists(sendable_arguments, max_size=3),
    st.lists(sendable_arguments, max_size=3),
    st.lists(sendable_arguments, max_size=3),
    st.lists(st.one_of(sendable_arguments, unsendable), min_size=1, max_size=3),
)


def carried(value: Any) -> Any:
    """``value`` as a worker receives it: kombu's JSON, encoded and decoded."""
    return kombu_loads(kombu_dumps(value))


def sendable(value: Any) -> bool:
    """Whether kombu's JSON carries ``value`` with every dictionary key as it is."""
    try:
        carried(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return not _odd_keys(value)


def _odd_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _odd_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_odd_keys(item) for item in value)
    return False


def same(a: Any, b: Any) -> bool:
    """Strict equality of what a function receives: types count (``1``, ``1.0``, ``True``),
    ``-0.0`` is not ``0.0``, ``NaN`` is itself, ``Decimal("1.0")`` is not ``Decimal("1")``, a
    time's zone counts, text is compared by code points. JSON's own identities are allowed: a
    tuple is the list it is sent as, and a dictionary's members have no order."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return str(a) == str(b)
    if isinstance(a, datetime | time):
        return a.isoformat() == b.isoformat() and a.tzinfo == b.tzinfo
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- the oracle ----------------------------------------------------------------------------


@dataclass
class Ledger:
    """What has run so far: by result (each run creates one Execution, its result), by key and
    by held reference. A call is judged against it, whatever order hypothesis sends them in."""

    runs: dict[int, Any] = field(default_factory=dict)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    references: dict[tuple[str, str], int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)

    def judge(self, scope: str, key: str, reference: str | None, call: Any, outcome: Any) -> None:
        """``call`` is what the function receives; ``outcome`` its result or the exception."""
        kind = type(outcome).__name__ if isinstance(outcome, BaseException) else "ran"
        self.answers[kind] = self.answers.get(kind, 0) + 1
        held = self.references.get((scope, reference)) if reference else None
        earlier = self.keys.get((scope, key))
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, REFUSALS), repr(outcome)
            if isinstance(outcome, KeyMismatch):
                assert earlier is not None, "a mismatch with a key that never ran"
                assert not same(self.runs[earlier], call), "the same call was refused"
            if isinstance(outcome, ReferenceConflict):
                assert held is not None, f"{reference!r} conflicts with a reference never held"
                assert not same(self.runs[held], call), "the same call was refused"
            return
        assert isinstance(outcome, int), outcome
        if outcome in self.runs:  # a replay: only ever of the same call
            assert same(self.runs[outcome], call), ("false replay", self.runs[outcome], call)
            assert outcome in (earlier, held), "replayed a run of another key and reference"
            return
        assert earlier is None, f"ran twice under the key {key!r}"
        assert held is None, f"ran twice for the reference {reference!r}"
        self.runs[outcome] = call
        self.keys[(scope, key)] = outcome
        if reference:
            self.references[(scope, reference)] = outcome


def outcome_of(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:  # judged by the ledger
        return exc


# -- IdempotentTask, run eagerly -----------------------------------------------------------

VALID_KEYS = ["k1", "k2", "task-3"]
KEY_TEXT = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '",')
keys = st.one_of(
    st.sampled_from(VALID_KEYS),
    st.sampled_from(VALID_KEYS),
    st.text(KEY_TEXT, min_size=1, max_size=6),
    st.text(KEY_TEXT, min_size=1, max_size=6),
    st.text(KEY_TEXT, min_size=1, max_size=6),
    st.sampled_from(['"k1"', "k1,k2", " k1", "k" * (MAX_KEY_LENGTH + 1), "\x00", "é"]),
    st.text(min_size=1, max_size=8),  # an empty task id is one Celery makes up
)
references = st.one_of(
    st.none(),
    st.sampled_from(["order:1", "order:2"]),
    texts,
    st.text(min_size=250, max_size=300),
)


def fuzz_app() -> Celery:
    app = Celery("fuzz", broker="memory://", set_as_current=False)

    @app.task(base=IdempotentTask, name="fuzz.record", shared=False)  # type: ignore[misc]
    def record(*args: Any, **kwargs: Any) -> int:
        return int(Execution.objects.create(label="fuzz-task").pk)

    task = app.tasks["fuzz.record"]
    task.idempotency_reference = lambda args, kwargs: kwargs.get("reference")
    return app


def test_idempotent_task_arguments_keys_and_references() -> None:
    task = fuzz_app().tasks["fuzz.record"]
    scope = "celery:fuzz.record"
    ledger = Ledger()

    def apply(key: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return task.apply(args=args, kwargs=kwargs, task_id=key).result  # or the exception

    @FUZZ_SETTINGS
    @given(
        key=keys,
        first=argument_lists,
        second=argument_lists,
        reference=references,
        other_reference=references,
    )
    def tasks(
        key: str, first: list[Any], second: list[Any], reference: Any, other_reference: Any
    ) -> None:
        for args, ref in ((first, reference), (second, other_reference)):
            kwargs = {"reference": ref}
            outcome = apply(key, args, kwargs)
            if not sendable([args, kwargs]):
                # Nothing a broker could carry: refused before anything ran or was stored.
                assert isinstance(outcome, TypeError | ValueError), repr(outcome)
                continue
            if key in VALID_KEYS:
                assert not isinstance(outcome, InvalidKey), outcome
            wire = carried([args, kwargs])
            ledger.judge(scope, key, ref, wire, outcome)
            if isinstance(outcome, int):
                # Delivered again, decoded from the message as a worker gets it: a replay.
                again = apply(key, *wire)
                assert again == outcome, (again, outcome, wire)

    tasks()
    assert Execution.objects.count() == len(ledger.runs)
    assert ledger.answers.get("ran", 0) > 0, ledger.answers


# -- once and perform ----------------------------------------------------------------------


def json_arguments(value: Any) -> bool:
    """Whether ``once`` can fingerprint ``value``: plain JSON, keys text, numbers finite, and
    text that JSON reads back as it was written (a surrogate pair comes back as one character)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return not _odd_keys(value) and all(json.loads(json.dumps(t)) == t for t in _texts(value))


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _texts(item)]
    return []


def test_once_arguments_keys_and_references() -> None:
    ledger = Ledger()
    scope = "fuzz.once"

    @once(
        key=lambda *args, key, reference: key,
        reference=lambda *args, key, reference: reference,
        scope=scope,
    )
    def act(*args: Any, key: str, reference: str | None) -> int:
        return int(Execution.objects.create(label="fuzz-once").pk)

    @FUZZ_SETTINGS
    @given(
        key=keys,
        first=argument_lists,
        second=argument_lists,
        reference=references,
        other_reference=references,
    )
    def calls(
        key: str, first: list[Any], second: list[Any], reference: Any, other_reference: Any
    ) -> None:
        for args, ref in ((first, reference), (second, other_reference)):
            outcome = outcome_of(lambda: act(*args, key=key, reference=ref))  # noqa: B023
            call = [args, {"key": key, "reference": ref}]
            if not json_arguments(call):
                assert isinstance(outcome, TypeError | ValueError), repr(outcome)
                continue
            if key in VALID_KEYS:
                assert not isinstance(outcome, InvalidKey), outcome
            ledger.judge(scope, key, ref, call, outcome)
            if isinstance(outcome, int):
                assert act(*args, key=key, reference=ref) == outcome

    calls()
    assert Execution.objects.count() == len(ledger.runs)
    assert ledger.answers.get("ran", 0) > 0, ledger.answers


SCOPES = ["jobs", "jobs ", "Jobs", "\x00", "\ud800", "s" * 255, "s" * 256, "\U0001f600" * 255]
scopes = st.one_of(st.sampled_from(SCOPES), texts, st.text(min_size=250, max_size=260))


def storable_scope(scope: str) -> bool:
    return (
        0 < len(scope) <= 255
        and "\x00" not in scope
        and not any("\ud800" <= char <= "\udfff" for char in scope)
    )


def test_perform_scopes_keys_and_references_of_any_text() -> None:
    """One fingerprint for every call: only the scope, the key and the reference tell them
    apart, and each is equal only to itself (never cut, merged or normalised)."""
    ledger = Ledger()

    def run() -> int:
        return int(Execution.objects.create(label="fuzz-perform").pk)

    @FUZZ_SETTINGS
    @given(scope=scopes, key=keys, reference=references)
    def calls(scope: str, key: str, reference: str | None) -> None:
        options = {"scope": scope, "key": key, "fingerprint": "f" * 64, "reference": reference}
        outcome = outcome_of(lambda: perform(run, **options).result)
        if not storable_scope(scope):
            assert isinstance(outcome, ValueError | InvalidKey), repr(outcome)
            return
        assert not isinstance(outcome, TypeError | ValueError), repr(outcome)
        if key in VALID_KEYS:
            assert not isinstance(outcome, InvalidKey), outcome
        ledger.judge(scope, key, reference, "same call", outcome)

    calls()
    assert Execution.objects.count() == len(ledger.runs)
    assert ledger.answers.get("ran", 0) > 0, ledger.answers


# -- what the fuzz found -------------------------------------------------------------------


def test_a_surrogate_pair_is_refused_not_taken_for_its_character() -> None:
    """Two code points U+D83D U+DE00 and the one character U+1F600 are different text, but
    JSON's escapes write both as \\ud83d\\ude00 and read that back as the character: the pair
    got the character's stored result."""

    @once(key=lambda text: "k", scope="fuzz.pair")
    def length(text: str) -> list[int]:
        return [len(text), Execution.objects.create(label="pair").pk]

    assert length("\U0001f600")[0] == 1
    with pytest.raises(ValueError, match="surrogate pair"):
        length("\ud83d\ude00")
    assert Execution.objects.count() == 1


def test_a_reference_that_looks_like_a_digest_is_not_the_digested_one() -> None:
    """A reference too long for the column is held as ``sha256:<its digest>``: a short one that
    reads like that digest must not be taken for it."""
    long = "order:" + "4" * 300
    lookalike = "sha256:" + hashlib.sha256(long.encode()).hexdigest()

    def run() -> int:
        return int(Execution.objects.create(label="digest").pk)

    options = {"scope": "fuzz.digest", "fingerprint": "f" * 64}
    first = perform(run, key="k1", reference=long, **options)
    second = perform(run, key="k2", reference=lookalike, **options)

    assert not second.replayed, "a replay of another reference's run"
    assert second.result != first.result


def test_arguments_nested_too_deeply_are_a_type_error() -> None:
    """Explicit, not fuzzed: hypothesis cannot print a value this deep."""

    @once(key=lambda value: "k", scope="fuzz.deep")
    def deep(value: Any) -> int:
        return int(Execution.objects.create(label="deep").pk)

    with pytest.raises(TypeError, match="nested too deeply"):
        deep(nested(5000))  # was a RecursionError
    assert not Execution.objects.exists()


def test_a_quoted_task_id_is_not_the_unquoted_one() -> None:
    """A header's ``"k"`` is the key ``k`` (an sf-string); a task id is its text. Read as a
    header's, the task ``"k"`` got the stored result of the task ``k``."""
    task = fuzz_app().tasks["fuzz.record"]

    first = task.apply(args=["a"], task_id="k").result
    quoted = task.apply(args=["a"], task_id='"k"').result

    assert isinstance(first, int)
    assert isinstance(quoted, InvalidKey), quoted
    assert Execution.objects.count() == 1
