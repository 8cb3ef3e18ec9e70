"""Adversarial review of issue 11's doors: attacks that broke a door (kept with their fix) and
attacks that held but guard something no other test does."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from rest_framework.test import APIRequestFactory, force_authenticate

from django_idempotency.core.issued_keys import issue_key
from django_idempotency.core.principals import user_principal
from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order, Payment, Refund, Transfer
from example_project.shop.views import TransferViewSet
from tests.test_checkout import browser, rendered_key
from tests.test_issued_keys import BODY as TRANSFER
from tests.testapp.models import Execution

pytestmark = pytest.mark.drf

DEEP_JSON = "[" * 100_000 + "]" * 100_000


class ShortLivedTransfers(TransferViewSet):
    """Issued keys only, but the view's own answer is kept for just a minute."""

    idempotency_ttl = 60
    idempotency_scope = "short-transfers"


@pytest.mark.django_db
def test_drf_record_outlives_the_issued_key_whatever_the_views_ttl(user: Any) -> None:
    # Attack: a late retry under a still-valid issued key after the view's short TTL ran out
    # would transfer twice. The record must be kept at least as long as the key is accepted.
    issued = issue_key(user_principal(user) or "")
    request = APIRequestFactory().post(
        "/api/transfers/", TRANSFER, format="json", HTTP_IDEMPOTENCY_KEY=issued.key
    )
    force_authenticate(request, user)
    response = ShortLivedTransfers.as_view({"post": "create"})(request)
    assert response.status_code == 201, response.content
    record = IdempotencyRecord.objects.get(key=issued.key)
    assert record.expires_at >= issued.expires_at
    assert Transfer.objects.count() == 1


@pytest.mark.django_db
def test_deeply_nested_json_to_a_form_view_with_a_reference_is_no_500(user: Any) -> None:
    # Attack: the reference lookup parses the JSON body; nesting deep enough makes the parser
    # raise RecursionError (not a ValueError), which escaped as a 500.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.post(
        "/test/doors/payment/", DEEP_JSON, "application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400, response.content[:300]
    assert Payment.objects.count() == 0


@pytest.mark.django_db
def test_a_form_key_is_refused_on_the_api(user: Any, assert_problem: Any, api: Any) -> None:
    # Attack: a key the checkout form rendered (bound to that form's endpoint) on a view that
    # takes only API-issued keys.
    form_key = rendered_key(browser(user))
    response = api.post("/api/transfers/", TRANSFER, format="json", HTTP_IDEMPOTENCY_KEY=form_key)
    assert_problem(response, 400, "invalid-issued-key")
    assert Transfer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ["%20{pk}", "+{pk}", "{pk}_0", "arabic-indic"])
def test_refund_twice_through_other_url_spellings(
    post: Any, user: Any, assert_problem: Any, spelling: str
) -> None:
    # Attack: each spelling the lookup resolves to one payment must be one reference, and a
    # spelling that names no payment must be a 404 (never a 500).
    order = Order.objects.create(owner=user, item="book", quantity=1)
    payment = Payment.objects.create(owner=user, order=order, amount=Decimal("50.00"))
    first = post(f"/api/payments/{payment.pk}/refund/", {"amount": "1.00"}, key="r1")
    assert first.status_code == 201, first.content
    if spelling == "arabic-indic":  # int() reads these digits too
        text = quote("".join(chr(0x660 + int(digit)) for digit in str(payment.pk)))
    else:
        text = spelling.format(pk=payment.pk)
    path = f"/api/payments/{text}/refund/"
    second = post(path, {"amount": "1.00"}, key="r2")
    if spelling == "{pk}_0":  # int("7_0") is 70: another payment, none of this user's
        assert second.status_code == 404, second.content
    else:
        assert_problem(second, 409, "idempotency-reference-conflict")
    assert Refund.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("pk", ["99999999999999999999", "1%00", "-1"])
def test_refund_of_an_impossible_payment_is_404(post: Any, pk: str) -> None:
    response = post(f"/api/payments/{pk}/refund/", {"amount": "1.00"}, key="r1")
    assert response.status_code == 404, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b"item=x&quantity=1&idempotency_key=a%00b",
        b"item=x&quantity=1&idempotency_key=%ED%A0%80",
        b"item=x&quantity=1&idempotency_key=" + b"a" * 5000,
        b"item=x&quantity=99999999999999999999999&idempotency_key=x",
    ],
)
def test_hostile_checkout_forms_are_400(user: Any, body: bytes) -> None:
    client = browser(user)
    response = client.generic("POST", "/shop/checkout/", body, "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert Order.objects.count() == 0


@pytest.mark.django_db
def test_bad_multipart_checkout_is_400(user: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.generic(
        "POST", "/shop/checkout/", b"--x\r\nbroken", "multipart/form-data; boundary=x"
    )
    assert response.status_code == 400
    assert Order.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
@pytest.mark.parametrize(
    "body",
    [DEEP_JSON, '{"item": "a\\u0000", "quantity": 1}', '{"item": "\\ud800", "quantity": 1}'],
    ids=["deep", "nul", "surrogate"],
)
def test_ninja_hostile_bodies_are_422_not_500(user: Any, path: str, body: str) -> None:
    # Attack: the example's ninja schema let a NUL or a lone surrogate reach PostgreSQL (500).
    from tests.test_ninja import bearer

    client = bearer(user)
    client.raise_request_exception = False
    response = client.post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert 400 <= response.status_code < 500, response.content[:300]
    assert Order.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
def test_ninja_bad_token_never_reaches_the_key(user: Any, path: str) -> None:
    from tests.test_ninja import bearer

    body = json.dumps({"item": "a", "quantity": 1})
    assert (
        bearer(user).post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 201
    )
    stranger = Client(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = stranger.post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ['"07"', "7.0", '" 7"'])
def test_ninja_reference_spelled_otherwise_is_the_same_order(
    user: Any, assert_problem: Any, spelling: str
) -> None:
    # Attack: the operation's schema reads "07", 7.0 and " 7" as order 7; the reference must
    # too, or a second key pays order 7 again.
    from tests.test_ninja import bearer

    client = bearer(user)
    path = "/test/rev11/ninja/pay/"
    first = client.post(path, '{"order": 7}', "application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.content
    second = client.post(
        path, f'{{"order": {spelling}}}', "application/json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert_problem(second, 409, "idempotency-reference-conflict")
    assert Execution.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ['"07"', '"+7"', "7.0"])
def test_function_view_reference_spelled_otherwise_is_the_same_order(
    user: Any, spelling: str
) -> None:
    # Attack on the README's function view (get_object_or_404(Order, pk=request.POST["order"])):
    # "07" finds order 7, so a second key must not pay it again as a new reference.
    client = Client()
    client.force_login(user)
    path = "/test/doors/plain/"
    first = client.post(path, '{"ref": 7}', "application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.content
    second = client.post(
        path, f'{{"ref": {spelling}}}', "application/json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert second.status_code == 409, second.content
    assert Execution.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["99999999999999999999", "1\x00", "\ud800", "9" * 5000])
def test_form_view_reference_of_an_impossible_order_is_400(user: Any, order: str) -> None:
    # The reference is cleaned by the form's ModelChoiceField, a database lookup: out-of-range
    # numbers, NUL and lone surrogates must reach it as a refusal, never a database error.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    body = json.dumps({"order": order, "amount": "1.00"})
    response = client.post(
        "/test/doors/payment/", body, "application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400, response.content[:300]
    assert Payment.objects.count() == 0
