"""The fingerprint: method, path with query string, and body (JSON in canonical form)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.test.client import encode_multipart

from django_idempotency.fingerprint import canonical_json, request_fingerprint
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db

JSON = "application/json"


def fingerprint(method: str, path: str, body: str, content_type: str = JSON) -> str:
    request = RequestFactory().generic(method, path, body, content_type=content_type)
    return request_fingerprint(request)


def test_equal_json_documents_fingerprint_alike() -> None:
    compact = fingerprint("POST", "/p/", '{"a":1,"b":[1,2],"c":{"x":"é","y":null}}')
    spaced = fingerprint(
        "POST", "/p/", '{ "c": {"y": null, "x": "\\u00e9"},\n "b": [1, 2], "a": 1.0 }'
    )
    assert compact == spaced


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
