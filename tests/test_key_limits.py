"""Keys and bodies at and over every limit: lengths, character sets, quoting, sizes and
content types. Whatever arrives, the answer is a clean 2xx/4xx, never a second execution."""

from __future__ import annotations

import string
import subprocess
import sys
from itertools import cycle, islice
from typing import Any

import pytest
from django.test import override_settings

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order, Payment
from tests.factories import OrderFactory
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

# Printable ASCII without the quote and the comma (a list), so the unquoted form is valid.
KEY_ALPHABET = "".join(c for c in string.printable[:95] if c not in '" ,')


def key_of(length: int) -> str:
    return "".join(islice(cycle(KEY_ALPHABET), length))


def quoted(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def raw_post(client: Any, path: str, body: bytes, content_type: str, key: str) -> Any:
    return client.generic("POST", path, body, content_type=content_type, HTTP_IDEMPOTENCY_KEY=key)


def assert_nothing_happened() -> None:
    assert Execution.objects.count() == 0
    assert Order.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


# -- key length ----------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["bare", "quoted"])
def test_a_255_character_key_is_stored_whole_and_replayed(post, form: str) -> None:
    key = key_of(255)
    raw = key if form == "bare" else quoted(key)
    first = post("/test/probe/", {"label": "a"}, key=raw)
    again = post("/test/probe/", {"label": "a"}, key=raw)
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert IdempotencyRecord.objects.get().key == key
    assert Execution.objects.count() == 1


def test_a_255_character_key_full_of_escapes_counts_after_unquoting(post) -> None:
    key = ('\\"' * 128)[:255]
    raw = quoted(key)
    assert len(raw) > 255 + 2
    first = post("/test/probe/", {"label": "a"}, key=raw)
    again = post("/test/probe/", {"label": "a"}, key=raw)
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == key


@pytest.mark.parametrize("raw", [key_of(256), quoted(key_of(256)), key_of(10_000)])
def test_a_key_over_255_characters_is_refused(post, assert_problem, raw: str) -> None:
    response = post("/test/probe/", {"label": "a"}, key=raw)
    assert_problem(response, 400, "invalid-idempotency-key")
    assert_nothing_happened()


# -- key characters ------------------------------------------------------------------------

NON_ASCII = {
    "latin-1 e acute": "cl\xe9",
    # What WSGI hands over for the UTF-8 bytes of "clé": each byte as a latin-1 character.
    "utf-8 bytes as latin-1": "cl\xc3\xa9",
    "no-break space": "a\xa0b",
    "snowman": "\u2603",
    "emoji": "key-\U0001f511",
    "right-to-left override": "a\u202eb",
}


@pytest.mark.parametrize("raw", NON_ASCII.values(), ids=NON_ASCII.keys())
@pytest.mark.parametrize("form", ["bare", "quoted"])
def test_non_ascii_keys_are_refused(post, assert_problem, raw: str, form: str) -> None:
    response = post("/test/probe/", {"label": "a"}, key=raw if form == "bare" else quoted(raw))
    assert_problem(response, 400, "invalid-idempotency-key")
    assert_nothing_happened()


CONTROL_CHARACTERS = [chr(code) for code in [*range(0x20), 0x7F]]


@pytest.mark.parametrize(
    "char", CONTROL_CHARACTERS, ids=[f"0x{ord(c):02x}" for c in CONTROL_CHARACTERS]
)
def test_control_characters_are_refused_anywhere(post, assert_problem, char: str) -> None:
    for raw in (f"{char}abc", f"a{char}bc", f"abc{char}", quoted(f"a{char}bc")):
        response = post("/test/probe/", {"label": "a"}, key=raw)
        assert_problem(response, 400, "invalid-idempotency-key")
    assert_nothing_happened()


@pytest.mark.parametrize(
    ("bare", "quoted_form"),
    [("abc", '"abc"'), ("a b", '"a b"'), ("a\\b", '"a\\\\b"'), ("'x'", "\"'x'\"")],
)
def test_the_quoted_and_bare_forms_name_one_key(post, bare: str, quoted_form: str) -> None:
    first = post("/test/probe/", {"label": "a"}, key=bare)
    again = post("/test/probe/", {"label": "a"}, key=quoted_form)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("raw", ['"abc', 'abc"', '"a"b"', '"a\\b"', '""', "", " ", '" "'])
def test_malformed_quoting_is_refused(post, assert_problem, raw: str) -> None:
    assert_problem(post("/test/probe/", {"label": "a"}, key=raw), 400, "invalid-idempotency-key")
    assert_nothing_happened()


# -- body size -----------------------------------------------------------------------------


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4096)
def test_a_body_at_the_upload_limit_runs_and_one_byte_more_is_a_413(api, assert_problem) -> None:
    def body(size: int) -> bytes:
        head = b'{"item": "a", "quantity": 1, "filler": "'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    over = raw_post(api, "/api/orders/", body(4097), "application/json", "k")
    assert_problem(over, 413, "payload-too-large")
    assert_nothing_happened()

    # The refused request claimed nothing: the same key is free for the request that fits.
    at_limit = raw_post(api, "/api/orders/", body(4096), "application/json", "k")
    replay = raw_post(api, "/api/orders/", body(4096), "application/json", "k")
    assert at_limit.status_code == 201, at_limit.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1


@override_settings(IDEMPOTENCY_MAX_STORED_BODY_SIZE=1000)
def test_a_response_at_the_storage_limit_is_stored_and_one_byte_more_is_a_stand_in(
    post, assert_problem
) -> None:
    # {"label":"a","pad":""} is 22 bytes; "size" pads it.
    stored = post("/test/probe/", {"label": "a", "size": 978}, key="fits")
    assert stored.status_code == 201
    assert len(stored.content) == 1000
    assert post("/test/probe/", {"label": "a", "size": 978}, key="fits")["Idempotent-Replayed"]

    too_big = post("/test/probe/", {"label": "a", "size": 979}, key="too-big")
    assert too_big.status_code == 201
    assert len(too_big.content) == 1001  # the first client gets it whole
    assert Execution.objects.count() == 2  # committed once, never run again
    replayed = post("/test/probe/", {"label": "a", "size": 979}, key="too-big")
    assert replayed["Content-Type"] == "application/problem+json"
    assert Execution.objects.count() == 2


@pytest.mark.parametrize("path", ["/api/orders/", "/api/notes/"])
def test_an_empty_body_is_a_validation_error_that_frees_the_key(api, assert_problem, path) -> None:
    assert_problem(raw_post(api, path, b"", "application/json", "k"), 400, "invalid")
    assert IdempotencyRecord.objects.count() == 0
    body = b'{"item": "a", "quantity": 1, "text": "t"}'
    assert raw_post(api, path, body, "application/json", "k").status_code == 201


def test_an_empty_body_is_a_request_like_any_other(api) -> None:
    first = raw_post(api, "/test/probe/", b"", "application/json", "k")
    again = raw_post(api, "/test/probe/", b"", "application/json", "k")
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1


# -- content types -------------------------------------------------------------------------

UNSUPPORTED = ["text/plain", "application/xml", "application/problem+json", "image/png", ""]


@pytest.mark.parametrize("content_type", UNSUPPORTED)
def test_an_unsupported_content_type_is_a_415_that_frees_the_key(
    api, assert_problem, content_type: str
) -> None:
    body = b'{"item": "a", "quantity": 1}'
    assert_problem(raw_post(api, "/api/orders/", body, content_type, "k"), 415)
    assert_nothing_happened()
    assert raw_post(api, "/api/orders/", body, "application/json", "k").status_code == 201


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"item": NaN, "quantity": 1}', b"\xff\xfe", '{"item": "\xe9"}'.encode("latin-1")],
    ids=["truncated", "nan", "not-utf-8", "latin-1"],
)
def test_unparseable_json_is_a_400_that_frees_the_key(api, assert_problem, body: bytes) -> None:
    assert_problem(raw_post(api, "/api/orders/", body, "application/json", "k"), 400)
    assert_nothing_happened()


def test_a_form_body_is_a_different_request_than_the_same_data_as_json(api, assert_problem):
    form = raw_post(
        api, "/api/orders/", b"item=a&quantity=1", "application/x-www-form-urlencoded", "k"
    )
    assert form.status_code == 201
    replay = raw_post(
        api, "/api/orders/", b"item=a&quantity=1", "application/x-www-form-urlencoded", "k"
    )
    assert replay["Idempotent-Replayed"] == "true"
    as_json = raw_post(api, "/api/orders/", b'{"item":"a","quantity":1}', "application/json", "k")
    assert_problem(as_json, 422, "idempotency-key-mismatch")
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"abc", "multipart/form-data"),
        (b"abc", "multipart/form-data; boundary="),
        (b"garbage", "multipart/form-data; boundary=x"),
    ],
    ids=["no-boundary", "empty-boundary", "no-parts"],
)
def test_broken_multipart_is_a_problem_400(api, assert_problem, body, content_type) -> None:
    response = raw_post(api, "/api/orders/", body, content_type, "k")
    assert_problem(response, 400)
    assert_nothing_happened()


# JSON that Python's parser accepts but that has no sane canonical form. Each must be refused
# (or run) cleanly: the fingerprint must never turn a client's body into a server error.
HOSTILE_JSON = {
    "lone surrogate escape": b'{"item": "\\ud800", "quantity": 1}',
    "nested 600 deep": b'{"item": "a", "quantity": 1, "x": ' + b"[" * 600 + b"]" * 600 + b"}",
    "5000-digit integer": b'{"item": "a", "quantity": 1' + b"0" * 5000 + b"}",
    "exponent 5000": b'{"item": "a", "quantity": 1, "x": 1e5000}',
}


@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_never_becomes_a_server_error(api, body: bytes) -> None:
    api.raise_request_exception = False
    response = raw_post(api, "/api/orders/", body, "application/json", "k")
    assert response.status_code < 500, response.content[:200]
    assert response["Content-Type"] in ("application/json", "application/problem+json")


def test_a_huge_exponent_costs_no_time() -> None:
    # Canonicalising 1e999999999 as an integer would build a billion-digit number: a request
    # of 30 bytes must not hold a worker for minutes. A subprocess, so a hang is a failure.
    code = (
        "from django_idempotency.core.fingerprint import canonical_json; "
        "canonical_json(b'{\"amount\": 1e999999999}')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=10, capture_output=True)


def test_an_overlong_reference_is_refused_not_a_server_error(post, assert_problem) -> None:
    response = post("/api/payments/", {"order": "9" * 300, "amount": "1.00"}, key="k")
    assert_problem(response, 400, "invalid")
    assert IdempotencyRecord.objects.count() == 0


# -- references ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["{pk}.0", '"0{pk}"', '" {pk}"', "{pk}e0", '"{pk}"'])
def test_one_payment_per_order_however_the_order_id_is_spelled(api, user, spelling: str) -> None:
    """The serializer accepts 7, 7.0, "07" and " 7" as the same order; so must the reference."""
    order = OrderFactory(owner=user)
    body = '{{"order": {order}, "amount": "25.00"}}'
    first = raw_post(
        api, "/api/payments/", body.format(order=order.pk).encode(), "application/json", "k1"
    )
    assert first.status_code == 201, first.content
    again = raw_post(
        api,
        "/api/payments/",
        body.format(order=spelling.format(pk=order.pk)).encode(),
        "application/json",
        "k2",
    )
    # A replay of the first payment, or a 409 reference conflict; never a second charge.
    assert again.status_code in (201, 409), again.content
    assert Payment.objects.filter(order=order).count() == 1


@pytest.mark.parametrize("quantity", [2**31 - 1, 2**31, 2**63, 10**30])
def test_an_out_of_range_number_is_refused_not_a_server_error(api, quantity: int) -> None:
    # PostgreSQL's integer column holds at most 2**31 - 1; the serializer must say so first.
    api.raise_request_exception = False
    response = raw_post(
        api,
        "/api/orders/",
        f'{{"item": "a", "quantity": {quantity}}}'.encode(),
        "application/json",
        "k",
    )
    assert response.status_code in (201, 400), response.content[:200]
    assert IdempotencyRecord.objects.filter(response_status__gte=500).count() == 0
