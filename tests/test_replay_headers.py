"""Faithful replays: every response header except a documented deny-list (issue 9.17)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_idempotency.conf import is_never_stored
from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

HEADERS = {
    "X-Order-Id": "42",
    "Location": "/test/probe/42/",
    "Cache-Control": "private, max-age=0",
    "ETag": '"v7"',
    "Vary": "Accept-Language",
    "Link": '</test/probe/42/receipt>; rel="related"',
    "Content-Language": "de",
}
SECRETS = {
    "Set-Cookie": "raw=1",
    "Date": "Tue, 01 Jan 2030 00:00:00 GMT",
    "Server": "probe/1.0",
    "X-CSRFToken": "csrf-secret",
    "X-Session-Id": "session-secret",
    "X-Auth-Token": "token-secret",
    "Authentication-Info": 'nextnonce="secret"',
    "Connection": "keep-alive",
    "Keep-Alive": "timeout=5",
}


def test_a_replay_carries_every_header_of_the_original(post) -> None:
    first = post("/test/probe/", {"label": "a", "headers": HEADERS}, key="k")
    again = post("/test/probe/", {"label": "a", "headers": HEADERS}, key="k")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    for name, value in HEADERS.items():
        assert again[name] == first[name], name
        assert value in first[name], name  # Vary gains "Cookie" from the session middleware
    assert again["X-Not-Replayed"] == first["X-Not-Replayed"] == "1"  # any custom header
    assert Execution.objects.count() == 1


def test_the_deny_list_is_never_stored_or_replayed(post) -> None:
    first = post("/test/probe/", {"label": "a", "headers": SECRETS, "cookie": "yum"}, key="k")
    again = post("/test/probe/", {"label": "a", "headers": SECRETS, "cookie": "yum"}, key="k")
    assert first["X-CSRFToken"] == "csrf-secret"
    assert again["Idempotent-Replayed"] == "true"
    for name in SECRETS:
        if name != "Date":  # the test client does not add one; a server would, afresh
            assert not again.has_header(name), name
    assert "probe" not in again.cookies
    stored = {name.lower() for name, _ in IdempotencyRecord.objects.get().response_headers}
    assert not stored & {name.lower() for name in SECRETS}
    assert "csrf-secret" not in str(IdempotencyRecord.objects.get().response_headers)


@pytest.mark.parametrize(
    "content_type", ["text/plain; charset=iso-8859-1", "text/csv; charset=utf-8; header=present"]
)
def test_a_content_type_with_its_charset_is_replayed(post, content_type: str) -> None:
    body = {"text": "café", "headers": {"Content-Type": content_type, "ETag": '"w"'}}
    first = post("/test/input/plain/", body, key="k")
    again = post("/test/input/plain/", body, key="k")
    assert first["Content-Type"] == content_type
    assert again["Content-Type"] == content_type
    assert again.content == first.content == "café".encode("latin-1")
    assert again["ETag"] == '"w"'
    assert Execution.objects.count() == 1


@override_settings(IDEMPOTENCY_NEVER_REPLAYED_HEADERS=["X-Order-Id", "cache-control"])
def test_the_deny_list_can_be_extended(post) -> None:
    post("/test/probe/", {"label": "a", "headers": HEADERS}, key="k")
    again = post("/test/probe/", {"label": "a", "headers": HEADERS}, key="k")
    assert not again.has_header("X-Order-Id")
    assert not again.has_header("Cache-Control")
    assert again["ETag"] == '"v7"'


@override_settings(IDEMPOTENCY_REPLAY_HEADERS=["Content-Type", "ETag", "Set-Cookie"])
def test_the_old_allow_list_still_restricts_when_set(post) -> None:
    post("/test/probe/", {"label": "a", "headers": {**HEADERS, **SECRETS}}, key="k")
    stored = {name.lower() for name, _ in IdempotencyRecord.objects.get().response_headers}
    assert stored == {"content-type", "etag"}


@pytest.mark.parametrize(
    "name", ["Set-Cookie", "X-CSRF-Token", "X-XSRF-TOKEN", "Proxy-Authenticate", "TE", "Trailer"]
)
def test_names_on_the_deny_list(name: str) -> None:
    assert is_never_stored(name)
    assert is_never_stored(name.upper())


@pytest.mark.parametrize("name", ["Location", "ETag", "Vary", "Cache-Control", "X-Order-Id"])
def test_names_that_are_replayed(name: str) -> None:
    assert not is_never_stored(name)
