"""The fingerprint: method, path with query string, media type, charset and body (JSON with only
member order and whitespace canonicalised)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.test.client import encode_multipart

from django_idempotency.core.fingerprint import canonical_json, request_fingerprint
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

JSON = "application/json"


def fingerprint(method: str, path: str, body: str, content_type: str = JSON) -> str:
    request = RequestFactory().generic(method, path, body, content_type=content_type)
    return request_fingerprint(request)


def test_member_order_whitespace_and_string_escapes_do_not_count() -> None:
    compact = fingerprint("POST", "/p/", '{"a":1,"b":[1,2],"c":{"x":"é","y":null}}')
    spaced = fingerprint(
        "POST", "/p/", '{ "c": {"y": null, "x": "\\u00e9"},\n "b": [1, 2], "a": 1 }'
    )
    assert compact == spaced


# The old rule made these pairs one request; a CharField stores "1" and "1.0", a DecimalField
# with max_digits refuses one and not the other: a replay across them is someone else's answer.
@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("1", "1.0"),
        ("100", "1E2"),
        ("1e2", "1E2"),
        ("0.0", "-0.0"),
        ("0", "-0"),
        ("1.50", "1.5"),
        ("10", "1e1"),
    ],
)
def test_number_lexemes_are_kept_as_sent(one: str, other: str) -> None:
    one_body, other_body = f'{{"a": {one}}}'.encode(), f'{{"a": {other}}}'.encode()
    assert canonical_json(one_body) != canonical_json(other_body)
    assert fingerprint("POST", "/p/", f'{{"a": {one}}}') != fingerprint(
        "POST", "/p/", f'{{"a": {other}}}'
    )
    # Spacing around a number still does not count.
    assert fingerprint("POST", "/p/", f'{{"a": {one}}}') == fingerprint(
        "POST", "/p/", f'{{ "a" :  {one} }}'
    )


def test_duplicate_member_names_keep_their_order() -> None:
    # Python's parser (and DRF's) keeps the last one: {"a":1,"a":2} means a=2.
    assert canonical_json(b'{"a": 1, "a": 2}') != canonical_json(b'{"a": 2, "a": 1}')
    reordered = canonical_json(b'{"b": 0, "a": 1, "a": 2}')
    assert reordered == canonical_json(b'{"a": 1, "a": 2, "b": 0}')


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("application/json", "application/merge-patch+json"),
        ("application/json", "application/json; charset=latin-1"),
        ("application/json; charset=utf-8", "application/json; charset=latin-1"),
        ("text/plain; charset=utf-8", "text/plain; charset=iso-8859-1"),
        ("text/plain", "application/octet-stream"),
    ],
)
def test_media_type_and_charset_count(one: str, other: str) -> None:
    body = '{"text": "caf\u00e9"}'
    assert fingerprint("POST", "/p/", body, one) != fingerprint("POST", "/p/", body, other)


def test_media_type_and_charset_names_are_case_blind() -> None:
    body = '{"a": 1}'
    assert fingerprint("POST", "/p/", body, "application/json; charset=UTF-8") == fingerprint(
        "POST", "/p/", body, "Application/JSON; charset=utf-8"
    )


def test_latin1_bytes_do_not_replay_a_utf8_answer(api, assert_problem) -> None:
    """The same bytes mean "cafÃ©" in latin-1 and "café" in UTF-8: two requests."""
    body = '{"label": "café"}'.encode()
    first = api.generic(
        "POST",
        "/test/probe/",
        body,
        content_type="application/json; charset=utf-8",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    again = api.generic(
        "POST",
        "/test/probe/",
        body,
        content_type="application/json; charset=latin-1",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert first.status_code == 201
    assert_problem(again, 422, "idempotency-key-mismatch")
    assert Execution.objects.count() == 1


@pytest.mark.parametrize(("one", "other"), [("1", "1.0"), ("100", "1E2")])
def test_another_number_spelling_under_one_key_is_a_mismatch(
    api, assert_problem, one: str, other: str
) -> None:
    first = api.post(
        "/test/probe/", f'{{"label": {one}}}', content_type=JSON, HTTP_IDEMPOTENCY_KEY="k"
    )
    again = api.post(
        "/test/probe/", f'{{"label": {other}}}', content_type=JSON, HTTP_IDEMPOTENCY_KEY="k"
    )
    assert first.status_code == 201
    assert first.json()["label"] == int(one)
    assert_problem(again, 422, "idempotency-key-mismatch")
    assert Execution.objects.get().label == one


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/p/", '{"a": 1}'),
        ("POST", "/q/", '{"a": 1}'),
        ("POST", "/p/?page=2", '{"a": 1}'),
        ("POST", "/p/", '{"a": 2}'),
        ("POST", "/p/", '{"a": "1"}'),
        ("POST", "/p/", '[{"a": 1}]'),
    ],
)
def test_method_path_query_and_body_each_count(method: str, path: str, body: str) -> None:
    assert fingerprint(method, path, body) != fingerprint("POST", "/p/", '{"a": 1}')


def test_json_array_order_counts() -> None:
    assert canonical_json(b"[1, 2]") != canonical_json(b"[2, 1]")


def test_other_bodies_are_compared_as_bytes() -> None:
    form = "application/x-www-form-urlencoded"
    assert fingerprint("POST", "/p/", "a=1&b=2", form) != fingerprint(
        "POST", "/p/", "b=2&a=1", form
    )
    text = "text/plain"
    assert fingerprint("POST", "/p/", "a", text) != fingerprint("POST", "/p/", "a ", text)
    assert fingerprint("POST", "/p/", "a", text) == fingerprint("POST", "/p/", "a", text)


def test_malformed_json_falls_back_to_bytes() -> None:
    assert canonical_json(b'{"a": ') is None
    assert fingerprint("POST", "/p/", '{"a": ') != fingerprint("POST", "/p/", '{"a":')


def test_reordered_json_body_is_a_replay(api) -> None:
    first = api.post(
        "/test/probe/", '{"label": "a", "size": 1}', content_type=JSON, HTTP_IDEMPOTENCY_KEY="k"
    )
    again = api.post(
        "/test/probe/",
        '{ "size": 1,\n  "label": "a" }',
        content_type=JSON,
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1


def test_other_query_string_under_one_key_is_a_mismatch(post, assert_problem) -> None:
    assert post("/test/probe/?v=1", {"label": "a"}, key="k").status_code == 201
    assert_problem(post("/test/probe/?v=2", {"label": "a"}, key="k"), 422)
    assert Execution.objects.count() == 1


def test_reordered_form_body_is_a_mismatch(api, assert_problem) -> None:
    form = "application/x-www-form-urlencoded"
    first = api.post("/test/probe/", "label=a&size=1", content_type=form, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post("/test/probe/", "size=1&label=a", content_type=form, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    assert_problem(again, 422)
    assert Execution.objects.count() == 1


def test_multipart_bodies_compare_by_parts_not_boundary() -> None:
    def multipart(boundary: str, data: dict[str, str]) -> str:
        body = encode_multipart(boundary, data).decode()
        return fingerprint("POST", "/p/", body, f"multipart/form-data; boundary={boundary}")

    assert multipart("one", {"a": "1"}) == multipart("two", {"a": "1"})
    assert multipart("one", {"a": "1"}) != multipart("two", {"a": "2"})
