"""Requests shaped to break the DRF adapter, each of which once did.

Each test failed before its fix: a false match of two different requests, or a second refund
of one payment through another spelling of its id in the URL.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_idempotency.models import IdempotencyRecord
from tests.conftest import client_for, race
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def post(api: Any, path: str, key: str, **extra: Any) -> Any:
    api.raise_request_exception = False
    return api.generic(
        "POST", path, b"{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=key, **extra
    )


# QUERY_STRING as a WSGI server hands it over: each raw byte as one latin-1 character. Django's
# get_full_path() percent-encodes those characters as UTF-8, which is exactly how the second
# request of each pair spells its query: one path, two different query parameters for DRF.
@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("note=\xc3\xa9", "note=%C3%83%C2%A9"),  # "é" sent raw vs "Ã©" sent escaped
        ("note=\xe9", "note=%C3%A9"),  # an invalid UTF-8 byte vs "é"
    ],
)
def test_a_raw_query_and_its_escaped_twin_never_share_a_response(
    api, assert_problem, raw: str, escaped: str
) -> None:
    first = post(api, "/test/drf/echo-query/", "k", QUERY_STRING=raw)
    assert first.status_code == 201, first.content
    retry = post(api, "/test/drf/echo-query/", "k", QUERY_STRING=raw)
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    other = post(api, "/test/drf/echo-query/", "k", QUERY_STRING=escaped)
    # Before: the first request's answer (another note) was replayed to this one.
    assert_problem(other, 422)
    assert Execution.objects.count() == 1


@pytest.fixture
def parent(db: None) -> Execution:
    return Execution.objects.create(label="payment")


@pytest.mark.parametrize("spelling", ["0{pk}", "00{pk}", "+{pk}", "%20{pk}"])
def test_a_nested_url_kwarg_names_one_parent_whatever_its_spelling(
    api, assert_problem, parent, spelling: str
) -> None:
    """``parents/01/refund/`` and ``parents/1/refund/`` refund one payment to the view (its
    lookup is ``int()``); the reference must be one too, or a new key refunds it again."""
    first = post(api, f"/test/drf/parents/{parent.pk}/refund/", "r1")
    assert first.status_code == 201, first.content
    again = post(api, f"/test/drf/parents/{spelling.format(pk=parent.pk)}/refund/", "r2")
    assert_problem(again, 409, "idempotency-reference-conflict")
    assert Execution.objects.filter(label__startswith="refund:").count() == 1


@pytest.mark.parametrize("value", ["1%00", "%00", "%ED%A0%80", "9" * 40])
def test_a_hostile_nested_url_kwarg_is_a_404_not_a_500(api, parent, value: str) -> None:
    response = post(api, f"/test/drf/parents/{value}/refund/", "r")
    assert response.status_code == 404, response.content
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_concurrent_spellings_of_one_parent_refund_once(user) -> None:
    """Real threads, one new key per copy, each spelling the parent differently."""
    parent = Execution.objects.create(label="payment")
    client = client_for(user)
    spellings = [f"{prefix}{parent.pk}" for prefix in ("", "0", "00", "+", "000", "%20")]

    def send(index: int) -> Any:
        return post(
            client, f"/test/drf/parents/{spellings[index]}/refund/?sleep=0.3", f"storm-{index}"
        )

    responses = race(len(spellings), send)

    assert sorted(r.status_code for r in responses) == [201] + [409] * (len(spellings) - 1)
    assert Execution.objects.filter(label__startswith="refund:").count() == 1


def post_json(api: Any, path: str, body: str, key: str) -> Any:
    api.raise_request_exception = False
    return api.generic(
        "POST", path, body.encode(), content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_a_reference_on_a_read_only_field_is_the_value_as_sent(api, assert_problem) -> None:
    """A careless integrator names a read-only field: DRF skips it (SkipField was a 500)."""
    path = "/test/drf/read-only-reference/"
    assert post_json(api, path, '{"order": 7}', "a").status_code == 201
    assert_problem(post_json(api, path, '{"order": 7, "note": "again"}', "b"), 409)
    assert post_json(api, path, '{"order": 8}', "c").status_code == 201


def test_a_read_only_field_with_a_default_is_no_shared_reference(api) -> None:
    """Its default (the same for everyone) was the reference: order 8 was refused after 7."""
    path = "/test/drf/read-only-default-reference/"
    assert post_json(api, path, '{"basket": 7}', "a").status_code == 201
    assert post_json(api, path, '{"basket": 8}', "b").status_code == 201
    assert Execution.objects.count() == 2


def test_a_view_that_only_renders_html_refuses_keys(user, assert_problem) -> None:
    """Its page embeds the CSRF token; storing it for the TTL contradicts docs/security.md."""
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    client.raise_request_exception = False
    response = client.post(
        "/test/drf/html-only/", {"a": "1"}, HTTP_IDEMPOTENCY_KEY="k", HTTP_ACCEPT="text/html"
    )
    assert_problem(response, 400, "idempotency-key-not-supported")
    assert IdempotencyRecord.objects.count() == 0
    assert Execution.objects.count() == 0
    # Without a key the page is served as usual.
    assert client.post("/test/drf/html-only/", {"a": "1"}).status_code == 201
