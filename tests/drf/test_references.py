"""References are the identity of what the serializer's field resolves to (issue 9.1), and
client values that must not reach SQL are a 400 before any statement (issue 9.2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.client import MULTIPART_CONTENT, encode_multipart
from django.test.utils import CaptureQueriesContext

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Payment
from tests.conftest import race
from tests.factories import OrderFactory
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

JSON = "application/json"


def pay(api: Any, path: str, body: str | bytes, key: str, content_type: str = JSON) -> Any:
    api.raise_request_exception = False
    data = body.encode() if isinstance(body, str) else body
    return api.generic("POST", path, data, content_type=content_type, HTTP_IDEMPOTENCY_KEY=key)


def order_body(value: str) -> str:
    return f'{{"order": {value}}}'


def assert_paid_once(first: Any, others: list[Any], label: str) -> None:
    assert first.status_code == 201, first.content
    for response in others:
        # A replay or a 409 reference conflict; never a second run.
        assert response.status_code in (201, 409), response.content
        if response.status_code == 201:
            assert response["Idempotent-Replayed"] == "true"
    assert list(Execution.objects.values_list("label", flat=True)) == [label]


# -- 9.1: one reference per resolved object ------------------------------------------------


def test_every_spelling_of_a_hyperlink_pays_the_order_once(api, user) -> None:
    order = OrderFactory(owner=user)
    pk = order.pk
    spellings = [
        f"http://testserver/api/orders/{pk}/",
        f"/api/orders/{pk}/",
        f"/api/orders/0{pk}/",
        f"http://testserver/api/orders/{pk}/?x=1",
        f"https://testserver/api/orders/00{pk}/",
    ]
    path = "/test/input/pay-hyperlinked/"
    responses = [
        pay(api, path, order_body(json.dumps(s)), f"k{n}") for n, s in enumerate(spellings)
    ]
    assert_paid_once(responses[0], responses[1:], str(pk))
    assert IdempotencyRecord.objects.get().reference == f"order:{pk}"


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_an_apiviews_hyperlinked_reference_in_four_spellings_raced_runs_once(api, user) -> None:
    """An ``APIView`` (no ``get_serializer()``) resolves its reference through the serializer
    it declares, as a generic view does: eight checkouts of one basket under eight keys, in
    four spellings, raced on real threads, check out once."""
    pk = OrderFactory(owner=user).pk
    spellings = [
        f"http://testserver/api/orders/{pk}/",
        f"/api/orders/{pk}/",
        f"http://testserver/api/orders/{pk}/?x=1",
        f"http://shop.example/api/orders/{pk}/",
    ]

    def checkout(index: int) -> Any:
        body = json.dumps({"basket": spellings[index % 4]})
        return pay(api, "/test/shop/checkout/", body, f"checkout-{index}")

    responses = race(8, checkout)

    statuses = sorted(r.status_code for r in responses)
    assert 201 in statuses, statuses
    assert set(statuses) <= {201, 409}, statuses
    assert list(Execution.objects.values_list("label", flat=True)) == [f"checkout {pk}"]
    paid = [r for r in responses if r.status_code == 201]
    assert sum(not r.has_header("Idempotent-Replayed") for r in paid) == 1
    assert len({r.content for r in paid}) == 1
    assert set(IdempotencyRecord.objects.values_list("reference", flat=True)) == {f"basket:{pk}"}


def test_two_slugs_with_and_without_leading_zeros_are_two_orders(api, user) -> None:
    first = OrderFactory(owner=user, item="542486")
    second = OrderFactory(owner=user, item="0542486")
    path = "/test/input/pay-slug/"
    assert pay(api, path, order_body('"542486"'), "k1").status_code == 201
    paid = pay(api, path, order_body('"0542486"'), "k2")
    assert paid.status_code == 201, paid.content
    assert not paid.has_header("Idempotent-Replayed")
    assert sorted(Execution.objects.values_list("label", flat=True)) == sorted(
        [str(first.pk), str(second.pk)]
    )
    # The same slug under a new key is the same order.
    assert pay(api, path, order_body('"0542486" '), "k3").status_code in (201, 409)
    assert Execution.objects.count() == 2


@pytest.mark.parametrize("path", ["/test/input/pay-pk/", "/api/payments/"])
def test_every_spelling_of_a_primary_key_is_one_reference(api, user, path: str) -> None:
    order = OrderFactory(owner=user)
    amount = ', "amount": "1.00"' if path == "/api/payments/" else ""
    spellings = [f"{order.pk}", f'"{order.pk}"', f"{order.pk}.0", f'" {order.pk}"']
    responses = [
        pay(api, path, f'{{"order": {s}{amount}}}', f"k{n}") for n, s in enumerate(spellings)
    ]
    assert responses[0].status_code == 201, responses[0].content
    for response in responses[1:]:
        assert response.status_code in (201, 409), response.content
    if path == "/api/payments/":
        assert Payment.objects.count() == 1
    else:
        assert Execution.objects.count() == 1
    assert set(IdempotencyRecord.objects.values_list("reference", flat=True)) == {
        f"order:{order.pk}"
    }


@pytest.mark.parametrize(
    ("path", "spellings", "reference"),
    [
        ("/test/input/pay-char/", ['"abc"', '" abc "'], "order:abc"),
        ("/test/input/pay-decimal/", ["1", '"1.0"', "1.00", '"1"'], "order:1.00"),
        ("/test/input/pay-custom/", ['"inv-1"', '" INV-1"'], "invoice:INV-1"),
    ],
)
def test_plain_fields_and_custom_hooks_name_their_canonical_value(
    api, path: str, spellings: list[str], reference: str
) -> None:
    responses = [pay(api, path, order_body(s), f"k{n}") for n, s in enumerate(spellings)]
    assert responses[0].status_code == 201, responses[0].content
    assert all(r.status_code in (201, 409) for r in responses[1:])
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.get().reference == reference


def test_a_refused_hyperlink_is_the_fields_400_before_any_record(api, assert_problem) -> None:
    response = pay(api, "/test/input/pay-hyperlinked/", order_body('"/api/notes/1/"'), "k")
    document = assert_problem(response, 400)
    assert "order" in document["errors"]
    assert IdempotencyRecord.objects.count() == 0


# -- 9.2: nothing client-controlled reaches SQL unsanitised --------------------------------

HOSTILE_JSON = [
    pytest.param(b'{"order": "1\\u0000", "amount": "1.00"}', id="nul"),
    pytest.param(b'{"order": "\\u0000", "amount": "1.00"}', id="only-nul"),
    pytest.param(b'{"order": "\\ud800", "amount": "1.00"}', id="lone-surrogate"),
    pytest.param(b'{"order": "1\\udfff", "amount": "1.00"}', id="trailing-surrogate"),
    pytest.param(b'{"order": 1e999, "amount": "1.00"}', id="1e999"),
    pytest.param(b'{"order": -1e999, "amount": "1.00"}', id="-1e999"),
    pytest.param(b'{"order": ' + b"9" * 300 + b', "amount": "1.00"}', id="300-digits"),
    pytest.param(b'{"order": "' + b"9" * 300 + b'", "amount": "1.00"}', id="300-digit-string"),
    pytest.param(b'{"order": 18446744073709551616, "amount": "1.00"}', id="2**64"),
    pytest.param(b'{"order": [1, "\\u0000"], "amount": "1.00"}', id="nul-in-list"),
    pytest.param(b'{"order": {"\\u0000": 1}, "amount": "1.00"}', id="nul-in-key"),
]

VIEWS = ["/api/payments/", "/test/input/pay-slug/", "/test/input/pay-char/", "/test/input/pay-pk/"]


@pytest.mark.parametrize("path", VIEWS)
@pytest.mark.parametrize("body", HOSTILE_JSON)
def test_hostile_references_are_a_400_and_the_key_stays_free(
    api, user, assert_problem, path: str, body: bytes
) -> None:
    response = pay(api, path, body, "k")
    assert "order" in assert_problem(response, 400)["errors"]
    assert IdempotencyRecord.objects.count() == 0
    assert Execution.objects.count() == Payment.objects.count() == 0
    # The key is still free: a valid request under it runs.
    order = OrderFactory(owner=user, item="slug")
    value = '"slug"' if "slug" in path else '"x"' if "char" in path else str(order.pk)
    assert pay(api, path, f'{{"order": {value}, "amount": "1.00"}}', "k").status_code == 201


@pytest.mark.parametrize("body", HOSTILE_JSON)
def test_hostile_references_under_a_used_key_are_a_400_too(
    api, user, assert_problem, body: bytes
) -> None:
    order = OrderFactory(owner=user)
    first = pay(api, "/api/payments/", f'{{"order": {order.pk}, "amount": "1.00"}}', "k")
    assert first.status_code == 201
    assert_problem(pay(api, "/api/payments/", body, "k"), 400)
    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.get().conflict_count == 0


@pytest.mark.parametrize("value", ["1%00", "%00", "1%00%00", "%ED%A0%80"])
def test_a_nul_in_a_form_field_is_a_400(api, assert_problem, value: str) -> None:
    form = "application/x-www-form-urlencoded"
    response = pay(api, "/api/payments/", f"order={value}&amount=1.00", "k", form)
    assert response.status_code == 400, response.content
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("path", VIEWS)
def test_a_nul_in_a_multipart_field_is_a_400(api, assert_problem, path: str) -> None:
    body = encode_multipart("BoUnDaRy", {"order": "1\x00", "amount": "1.00"})
    response = pay(api, path, body, "k", MULTIPART_CONTENT)
    assert "order" in assert_problem(response, 400)["errors"]
    assert IdempotencyRecord.objects.count() == 0


# QUERY_STRING as a WSGI server hands it over: each byte as latin-1.
@pytest.mark.parametrize("query", ["a=%00", "a=\x00", "a=\xed\xa0\x80", "%00=%00", "a=\xff"])
def test_nul_and_surrogates_in_the_query_string_never_reach_sql(api, user, query: str) -> None:
    order = OrderFactory(owner=user)
    api.raise_request_exception = False
    body = f'{{"order": {order.pk}, "amount": "1.00"}}'.encode()
    for attempt in range(2):
        response = api.generic(
            "POST",
            "/api/payments/",
            body,
            content_type=JSON,
            QUERY_STRING=query,
            HTTP_IDEMPOTENCY_KEY="k",
        )
        assert response.status_code == 201, response.content
        assert response.has_header("Idempotent-Replayed") == bool(attempt)
    assert Payment.objects.count() == 1
    path = IdempotencyRecord.objects.get().request_path
    assert "\x00" not in path
    path.encode("utf-8")  # no lone surrogate either


def test_a_primary_key_costs_no_query_and_a_hyperlink_one(api, user) -> None:
    """What resolving costs on a replay (the figure the benchmark reports)."""
    order = OrderFactory(owner=user)

    def replay_statements(path: str, value: str) -> int:
        pay(api, path, order_body(value), f"key-{path}")
        with CaptureQueriesContext(connection) as replay:
            again = pay(api, path, order_body(value), f"key-{path}")
        assert again["Idempotent-Replayed"] == "true"
        return len(replay.captured_queries)

    by_pk = replay_statements("/test/input/pay-pk/", str(order.pk))
    by_link = replay_statements("/test/input/pay-hyperlinked/", f'"/api/orders/{order.pk}/"')
    assert by_link == by_pk + 1


@pytest.mark.parametrize("spelling", ["0{n}", "+{n}", "%20{n}"])
def test_a_url_kwarg_of_another_lookup_field_names_one_object_whatever_its_spelling(
    api, assert_problem, user, spelling: str
) -> None:
    """``lookup_field = "quantity"`` (an integer field, as a public order number): the view's
    lookup reads ``07`` and ``7`` as one order, so a second key must not ship it again."""
    order = OrderFactory(owner=user, quantity=7)
    first = pay(api, "/test/input/ship-by-quantity/7/ship/", "{}", "s1")
    assert first.status_code == 201, first.content
    path = f"/test/input/ship-by-quantity/{spelling.format(n=7)}/ship/"
    again = pay(api, path, "{}", "s2")
    assert_problem(again, 409, "idempotency-reference-conflict")
    assert list(Execution.objects.values_list("label", flat=True)) == [f"ship {order.pk}"]
