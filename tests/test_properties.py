"""Property-based tests (hypothesis): the key parser, the canonical JSON of the fingerprint, and
the mixin itself fed random keys, headers, bodies and content types through the test client.

Each property runs inside ``measure()``, so the number of inputs tried lands in the figures of
docs/reliability.md.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_idempotency.core.fingerprint import canonical_json, request_fingerprint
from django_idempotency.core.keys import MAX_KEY_LENGTH, parse_key
from django_idempotency.exceptions import InvalidKey
from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Note, Order, Payment
from tests.conftest import client_for
from tests.e2e.faults.figures import HOSTILE, SECURITY, measure
from tests.factories import OrderFactory

pytestmark = pytest.mark.drf

PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F))
PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the key parser ------------------------------------------------------------------------


def quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and set(key) <= set(PRINTABLE) and key == key.strip(" ")


valid_keys = st.text(alphabet=PRINTABLE, min_size=1, max_size=MAX_KEY_LENGTH).filter(is_valid_key)
header_values = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=PRINTABLE + "\t\x00\x7f\xe9", max_size=300),
    valid_keys.map(quoted),
    st.builds(lambda a, b: quoted(a) + b, valid_keys, st.text(max_size=3)),
)


def test_key_parser_properties() -> None:
    tried = 0

    @PROPERTY_SETTINGS
    @given(raw=header_values)
    @example(raw="x" * 255)
    @example(raw="x" * 256)
    @example(raw='"' + "x" * 255 + '"')
    @example(raw='"\\')
    def any_header_value(raw: str) -> None:
        nonlocal tried
        tried += 1
        try:
            key = parse_key(raw)
        except InvalidKey:
            return
        # Whatever it accepts is a valid key, and the same key in its quoted form.
        assert key is not None
        assert is_valid_key(key), key
        assert parse_key(quoted(key)) == key

    @PROPERTY_SETTINGS
    @given(key=valid_keys)
    def every_valid_key(key: str) -> None:
        nonlocal tried
        tried += 1
        assert parse_key(quoted(key)) == key
        if '"' not in key and "," not in key:  # a bare comma makes a list (refused)
            assert parse_key(key) == key

    @PROPERTY_SETTINGS
    @given(
        key=valid_keys,
        bad=st.characters(exclude_characters=PRINTABLE),
        at=st.integers(min_value=0),
    )
    def one_bad_character(key: str, bad: str, at: int) -> None:
        nonlocal tried
        tried += 1
        position = at % (len(key) + 1)
        spoiled = key[:position] + bad + key[position:]
        for raw in (spoiled, quoted(spoiled)):
            with pytest.raises(InvalidKey):
                parse_key(raw)

    with measure(
        "Key parser",
        section=HOSTILE,
        what="Random header values (any Unicode, control characters, quoted forms with "
        "trailing junk), every valid key bare and quoted, valid keys with one bad character: "
        "a header is refused or names a valid key, and both forms of a key name it.",
    ) as sheet:
        try:
            any_header_value()
            every_valid_key()
            one_bad_character()
        finally:
            sheet.inputs_tried = tried


# -- the fingerprint's canonical JSON ------------------------------------------------------

# Numbers are Decimals, so the tests can spell them many ways and compare them exactly.
long_decimals = st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?", fullmatch=True).map(
    Decimal
)
numbers = st.one_of(
    st.integers().map(Decimal),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12),
    long_decimals,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def semantic(value: Any) -> Any:
    """A value that is equal for two documents exactly when they mean the same JSON."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, Decimal):
        # The lexeme, not the value: 1 and 1.0 are two requests (a CharField keeps both).
        return ("number", spell_number(value, 0))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list):
        return ("array", tuple(semantic(item) for item in value))
    return ("object", tuple(sorted((name, semantic(item)) for name, item in value.items())))


def spell_number(value: Decimal, style: int) -> str:
    if style == 0:
        return str(value).replace("E", "e")
    if style == 1:
        return f"{value:e}"  # exact: 1.50 -> 1.50e+0
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return f"{'-' if sign else ''}0.00"  # JSON allows no leading zeros
    coefficient = "".join(map(str, digits)) + "00"  # trailing zeros, exponent adjusted
    return f"{'-' if sign else ''}{coefficient}e{exponent - 2}"


def spell(value: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """One of many JSON spellings of ``value``: key order, spacing, escapes, number forms."""
    space = draw(st.sampled_from(["", " ", "\n  "]))
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, Decimal):
        return spell_number(value, 0)  # numbers are kept as sent: one spelling per value
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=draw(st.booleans()))
        return text.replace("/", "\\/") if draw(st.booleans()) else text
    if isinstance(value, list):
        return "[" + space + ("," + space).join(spell(item, draw) for item in value) + "]"
    items = list(value.items())
    items = draw(st.permutations(items)) if items else items
    members = (f"{spell(name, draw)}{space}:{space}{spell(item, draw)}" for name, item in items)
    return "{" + space + ("," + space).join(members) + space + "}"


def mutate(value: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """``value`` with one change somewhere (possibly one that changes nothing)."""
    if isinstance(value, list) and value and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutate(value[index], draw), *value[index + 1 :]]
    if isinstance(value, dict) and value and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(value)))
        return {**value, name: mutate(value[name], draw)}
    if isinstance(value, Decimal) and draw(st.booleans()):
        # The smallest of changes, far past any float's or context's precision.
        return value + Decimal(draw(st.sampled_from(["1e-40", "-1e-40", "1e-29", "1e-12"])))
    change = draw(st.sampled_from(["replace", "wrap", "stringify", "drop", "add", "reverse"]))
    if change == "wrap":
        return [value]
    if change == "stringify":
        return json.dumps(value, default=str)
    if change == "drop" and isinstance(value, dict | list) and value:
        return dict(list(value.items())[1:]) if isinstance(value, dict) else value[1:]
    if change == "add" and isinstance(value, dict):
        return {**value, draw(st.text(max_size=3)): draw(scalars)}
    if change == "reverse" and isinstance(value, list):
        return value[::-1]
    return draw(scalars)


def post_request(body: str, content_type: str = "application/json", path: str = "/p/") -> Any:
    return RequestFactory().post(path, body.encode(), content_type=content_type)


# Regressions: numbers that differ only past 28 significant digits (decimal's default
# context), and values whose canonical form used to raise or take forever.
SUBTLE_PAIRS = [
    ("0.1000000000000000000000000000001", "0.1000000000000000000000000000002"),
    ("1e-999999999", "0"),
    ("12345678901234567890123456789012", "12345678901234567890123456789013"),
]


def test_canonical_json_properties() -> None:
    tried = 0

    @PROPERTY_SETTINGS
    @given(document=documents, data=st.data())
    def equal_data_equal_fingerprint(document: Any, data: st.DataObject) -> None:
        nonlocal tried
        tried += 1
        first, second = spell(document, data.draw), spell(document, data.draw)
        assert canonical_json(first.encode()) == canonical_json(second.encode()), (first, second)
        for content_type in ("application/json", "application/merge-patch+json"):
            assert request_fingerprint(post_request(first, content_type)) == request_fingerprint(
                post_request(second, content_type)
            )

    @PROPERTY_SETTINGS
    @given(document=documents, data=st.data())
    def any_change_another_fingerprint(document: Any, data: st.DataObject) -> None:
        nonlocal tried
        tried += 1
        other = data.draw(
            st.one_of(documents, st.just(None).map(lambda _: mutate(document, data.draw)))
        )
        first, second = spell(document, data.draw), spell(other, data.draw)
        same_meaning = semantic(document) == semantic(other)
        same_canonical = canonical_json(first.encode()) == canonical_json(second.encode())
        assert same_canonical == same_meaning, (first, second)
        same_fingerprint = request_fingerprint(post_request(first)) == request_fingerprint(
            post_request(second)
        )
        assert same_fingerprint == same_meaning, (first, second)

    @PROPERTY_SETTINGS
    @given(number=numbers, styles=st.lists(st.integers(0, 2), min_size=2, max_size=2, unique=True))
    def number_spellings_count(number: Decimal, styles: list[int]) -> None:
        nonlocal tried
        tried += 1
        one, other = (spell_number(number, style) for style in styles)
        same = canonical_json(f"[{one}]".encode()) == canonical_json(f"[ {other} ]".encode())
        assert same == (one == other), (one, other)

    @PROPERTY_SETTINGS
    @given(
        body=st.binary(max_size=64),
        other=st.binary(max_size=64),
        content_type=st.sampled_from(["text/plain", "application/octet-stream", "image/png"]),
    )
    def raw_bodies(body: bytes, other: bytes, content_type: str) -> None:
        nonlocal tried
        tried += 1
        factory = RequestFactory()
        one = request_fingerprint(factory.post("/p/", body, content_type=content_type))
        two = request_fingerprint(factory.post("/p/", other, content_type=content_type))
        assert (one == two) == (body == other)
        # Method and path are part of the request, whatever the body.
        assert one != request_fingerprint(factory.put("/p/", body, content_type=content_type))
        assert one != request_fingerprint(factory.post("/p/?a", body, content_type=content_type))

    with measure(
        "Fingerprint (canonical JSON)",
        section=HOSTILE,
        what="Random JSON documents, each spelled two ways (key order, spacing, escapes) "
        "and compared with itself and with a changed copy (one leaf, a 1e-40 nudge, a dropped "
        "or added member, a wrapped or stringified value); numbers spelled two ways (1.50 / "
        "1.50e+0 / 15000e-4) must differ; raw bodies byte for byte. Equal data gives equal "
        "fingerprints, any change (number spelling included) another one.",
    ) as sheet:
        try:
            for left, right in SUBTLE_PAIRS:
                tried += 1
                assert canonical_json(left.encode()) != canonical_json(right.encode()), (
                    left,
                    right,
                )
            equal_data_equal_fingerprint()
            any_change_another_fingerprint()
            number_spellings_count()
            raw_bodies()
        finally:
            sheet.inputs_tried = tried


# -- the mixin through the test client -----------------------------------------------------

ENDPOINTS = {"/api/orders/": Order, "/api/notes/": Note, "/api/payments/": Payment}
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=BoUnDaRy",
    "multipart/form-data",
    "text/plain",
    "",
]
# JSON that parses but has no easy canonical form (bounded: nothing here may hang a worker).
NASTY_BODIES = [
    b'{"text": "\\ud800"}',
    b'{"text": "a", "x": ' + b"[" * 600 + b"]" * 600 + b"}",
    b'{"quantity": 1' + b"0" * 5000 + b"}",
    b'{"amount": 1e5000}',
    b'{"amount": 1e-5000}',
]
BODY_KINDS = ["valid", "valid", "valid", "random JSON", "form", "nasty JSON", "bytes"]
KEY_POOL = ["k1", '"k1"', "k2", "shared key", '"shared key"', "a" * 255]


@pytest.mark.django_db
def test_the_mixin_under_random_requests(user: Any, other_user: Any) -> None:
    """Never a 500, never a second execution, never another user's response."""
    clients = {"alice": client_for(user), "bob": client_for(other_user), "anonymous": APIClient()}
    owners = {"alice": user.pk, "bob": other_user.pk}
    orders = {name: OrderFactory(owner_id=pk).pk for name, pk in owners.items()}
    for client in clients.values():
        client.raise_request_exception = False
    # (user, path, key) -> the stored response's (status, body): what a replay must repeat.
    stored: dict[tuple[str, str, str], tuple[int, bytes]] = {}
    baseline = row_count()  # the two orders above
    statuses: Counter[str] = Counter()
    bodies: Counter[str] = Counter()
    executions = 0
    tried = 0

    def body_for(path: str, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
        if path == "/api/orders/":
            valid: dict[str, Any] = {
                "item": draw(st.sampled_from(["book", "pen"])),
                "quantity": draw(st.sampled_from([1, 2, 0])),
            }
        elif path == "/api/notes/":
            valid = {"text": draw(st.sampled_from(["hi", "ho", ""]))}
        else:
            order = draw(st.sampled_from([*orders.values(), 10**9, "x", None]))
            amount = draw(st.sampled_from(["1.00", "20000.00", "0", 5]))
            valid = {"order": order, "amount": amount}
        kind = draw(st.sampled_from(BODY_KINDS))
        bodies[kind] += 1
        if kind == "valid":
            return spell(_as_decimals(valid), draw).encode()
        if kind == "random JSON":
            return spell(draw(documents), draw).encode()
        if kind == "form":
            return "&".join(f"{k}={v}" for k, v in valid.items()).encode()
        if kind == "nasty JSON":
            return draw(st.sampled_from(NASTY_BODIES))
        return draw(st.binary(max_size=40))

    requests = st.fixed_dictionaries(
        {
            "user": st.sampled_from(["alice", "alice", "bob", "bob", "anonymous"]),
            "path": st.sampled_from(sorted(ENDPOINTS)),
            # Weighted towards requests that get through, so replays and conflicts happen.
            "key": st.one_of(
                st.sampled_from(KEY_POOL), st.sampled_from(KEY_POOL), header_values, st.none()
            ),
            "content_type": st.one_of(
                st.just("application/json"),
                st.just("application/json"),
                st.sampled_from(CONTENT_TYPES),
                st.text(max_size=20),
            ),
            "headers": st.fixed_dictionaries(
                {},
                optional={
                    "HTTP_ACCEPT": st.sampled_from(
                        ["*/*", "application/json", "application/*", "text/html", "*/*;q=0"]
                    ),
                    "HTTP_COOKIE": st.text(max_size=30),
                    "HTTP_X_FORWARDED_FOR": st.text(max_size=12),
                    "HTTP_ORIGIN": st.text(max_size=12),
                },
            ),
        }
    )

    @PROPERTY_SETTINGS
    @given(batch=st.lists(requests, min_size=1, max_size=5), data=st.data())
    def random_requests(batch: list[dict[str, Any]], data: st.DataObject) -> None:
        nonlocal executions, tried
        for request in batch:
            tried += 1
            user_name, path = request["user"], request["path"]
            body = body_for(path, data.draw)
            headers = {name: as_wsgi(value) for name, value in request["headers"].items()}
            raw_key = None if request["key"] is None else as_wsgi(request["key"])
            if raw_key is not None:
                headers["HTTP_IDEMPOTENCY_KEY"] = raw_key
            try:
                key, valid = parse_key(raw_key), True
            except InvalidKey:
                key, valid = None, False
            slot = None if user_name == "anonymous" or key is None else (user_name, path, key)
            known = stored.get(slot) if slot else None
            rows, records = row_count(), IdempotencyRecord.objects.count()

            response = clients[user_name].generic(
                "POST", path, body, content_type=as_wsgi(request["content_type"]), **headers
            )

            # Bookkeeping first, so a failed assertion leaves the model in step with the database.
            created, recorded = row_count() - rows, IdempotencyRecord.objects.count() - records
            executions += created
            if recorded and slot is not None and known is None:
                stored[slot] = (response.status_code, response.content)
            status = response.status_code
            replayed = response.get("Idempotent-Replayed") == "true"
            label = f"{status} replayed" if replayed else str(status)
            if status >= 500 and response["Content-Type"] != "application/problem+json":
                label += " not problem+json"
            statuses[label] += 1

            assert status < 500, (status, response.content[:300])
            assert created in (0, 1)
            assert recorded in (0, 1)
            if status >= 400 and not replayed:
                assert response["Content-Type"] == "application/problem+json", response.content
            if user_name == "anonymous" or not valid:
                # Refused before any key is looked at (406: nothing it accepts can be rendered).
                assert status in ((401, 403, 406) if user_name == "anonymous" else (400, 406))
                assert created == recorded == 0
                continue
            if replayed:
                # A replay repeats what this user stored at this endpoint, never anything else.
                assert created == recorded == 0
                mine = {
                    answer for (o, w, _), answer in stored.items() if (o, w) == (user_name, path)
                }
                assert (status, response.content) in mine
                if known is not None:
                    assert (status, response.content) == known
                continue
            # Not replayed: a first run, or a refusal.
            assert bool(created) == (200 <= status < 300), (status, created)
            if created or recorded:
                assert known is None, ("second execution", slot, status)
            if created:
                row = ENDPOINTS[path].objects.get(pk=json.loads(response.content)["id"])
                assert row.owner_id == owners[user_name]  # never written for someone else
            if status == 422:
                assert known is not None  # a mismatch needs an earlier request under the key
        assert row_count() - baseline == executions
        per_order = list(Payment.objects.values_list("order_id", flat=True))
        assert len(per_order) == len(set(per_order)), "two payments for one order"

    with measure(
        "Mixin under random requests (test client)",
        section=SECURITY,
        what="Random sequences of POSTs to orders, notes and payments as alice, bob or "
        "nobody, with random keys (a shared pool, quoted forms, any Unicode, none), "
        "bodies (valid, random JSON, form data, bytes), content types and extra headers.",
    ) as sheet:
        try:
            random_requests()
        finally:
            # Filled in even when hypothesis found a failure, so the figures show it.
            sheet.requests = sheet.inputs_tried = tried
            sheet.operations = executions
            counted = row_count() - baseline
            sheet.lost = max(0, executions - counted)
            paid = Counter(Payment.objects.values_list("order_id", flat=True))
            sheet.duplicated = max(0, counted - executions) + sum(n - 1 for n in paid.values())
            sheet.server_errors = sum(n for answer, n in statuses.items() if answer[0] == "5")
            sheet.unclean_server_errors = sum(
                n for answer, n in statuses.items() if answer.endswith("not problem+json")
            )
            sheet.notes["stored responses"] = len(stored)
            sheet.notes["records"] = IdempotencyRecord.objects.count()
            sheet.notes["answers"] = dict(sorted(statuses.items()))
            sheet.notes["bodies"] = dict(sorted(bodies.items()))


def row_count() -> int:
    return sum(model.objects.count() for model in ENDPOINTS.values())


def as_wsgi(value: str) -> str:
    """What a WSGI server hands Django for a header sent as UTF-8: each byte as latin-1."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


def _as_decimals(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    return {name: _as_decimals(item) for name, item in value.items()}
