"""The HTML refusal page and every refusal's text offer only what is safe to do next.

In flight (or any refusal where the operation may have run): send this same submission again,
same key and fields, never a fresh form. Done already: nothing to resend. Only a refusal where
the view never ran may offer a fresh form (a new key).
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory

from django_idempotency import exceptions
from django_idempotency.core.fingerprint import request_fingerprint
from django_idempotency.core.problems import server_error
from django_idempotency.views import refusal_response
from example_project.shop.models import Order

RESEND_FORM = re.compile(
    r'<form method="post" action="(?P<action>[^"]*)" enctype="(?P<enctype>[^"]*)">'
    r"(?P<inputs>.*?)</form>",
    re.S,
)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]*)" value="([^"]*)">')
URLENCODED = "application/x-www-form-urlencoded"
CHECKOUT = "/shop/checkout/"


def resend_form(page: Any) -> tuple[str, str, list[tuple[str, str]]] | None:
    """The page's "send the same submission again" form: action, enctype and hidden fields."""
    match = RESEND_FORM.search(page.content.decode())
    if match is None:
        return None
    fields = [(html.unescape(n), html.unescape(v)) for n, v in HIDDEN.findall(match["inputs"])]
    return html.unescape(match["action"]), match["enctype"], fields


def offers_a_fresh_form(page: Any, path: str) -> bool:
    return f'href="{path}"' in page.content.decode()


ALL_ERRORS: list[exceptions.IdempotencyError] = [
    exceptions.IdempotencyError(),
    exceptions.InvalidKey(),
    exceptions.MissingKey(),
    exceptions.AuthenticationRequired(),
    exceptions.PayloadTooLarge(),
    exceptions.KeyMismatch(),
    exceptions.RequestInFlight(),
    exceptions.ReferenceConflict("order:7"),
    exceptions.ReferenceHeld("order:7"),
    exceptions.ResponseNotStorable(),
    exceptions.DatabaseUnavailable(),
    exceptions.KeyNotSupported(),
    exceptions.InvalidIssuedKey(),
    exceptions.IssuedKeyExpired(),
]
NOTHING_RAN = {
    "invalid-idempotency-key",
    "missing-idempotency-key",
    "payload-too-large",
    "idempotency-key-not-supported",
    "invalid-issued-key",
    "issued-key-expired",
}
ALREADY_DONE = {
    "idempotency-key-mismatch",
    "idempotency-reference-conflict",
}


def form_post(body: str = "item=book&quantity=2&idempotency_key=K", path: str = CHECKOUT) -> Any:
    return RequestFactory().post(path, body, content_type=URLENCODED)


@pytest.mark.parametrize("error", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_each_page_offers_only_what_is_safe_for_its_case(error: Any) -> None:
    page = refusal_response(form_post(), error)
    assert page["Content-Type"].startswith("text/html")
    assert page["Cache-Control"] == "no-store"  # it may repeat the submitted fields
    fresh, resend = offers_a_fresh_form(page, CHECKOUT), resend_form(page) is not None
    if error.default_code in NOTHING_RAN:
        assert error.retry == "new"
        assert (fresh, resend) == (True, False)
    elif error.default_code in ALREADY_DONE:
        assert error.retry == "none"
        assert (fresh, resend) == (False, False)
    else:  # it may be running or have run: only the same submission again
        assert error.retry == "same"
        assert (fresh, resend) == (False, True)


def test_in_flight_page_resends_the_very_same_urlencoded_request() -> None:
    body = "a=1&b=two+words&a=%C3%A9&csrfmiddlewaretoken=T&idempotency_key=K%3A1"
    original = form_post(body, path="/shop/checkout/?next=%2Fdone")
    page = refusal_response(original, exceptions.RequestInFlight())
    assert page.status_code == 409
    assert page["Retry-After"] == "1"
    found = resend_form(page)
    assert found is not None
    action, enctype, fields = found
    assert (action, enctype) == ("/shop/checkout/?next=%2Fdone", URLENCODED)
    # In the submitted order, repeated names included, the key and the CSRF token too.
    assert fields == [
        ("a", "1"),
        ("b", "two words"),
        ("a", "é"),
        ("csrfmiddlewaretoken", "T"),
        ("idempotency_key", "K:1"),
    ]
    resent = RequestFactory().post(action, urlencode(fields), content_type=enctype)
    assert request_fingerprint(resent) == request_fingerprint(original)
    assert not offers_a_fresh_form(page, "/shop/checkout/?next=%2Fdone")


def test_in_flight_page_resends_a_multipart_form_without_files() -> None:
    data = {"item": "book", "quantity": "2", "idempotency_key": "K"}
    original = RequestFactory().post(CHECKOUT, data)
    found = resend_form(refusal_response(original, exceptions.RequestInFlight()))
    assert found is not None
    action, enctype, fields = found
    assert enctype == "multipart/form-data"
    resent = RequestFactory().post(action, dict(fields))
    assert request_fingerprint(resent) == request_fingerprint(original)


@pytest.mark.parametrize(
    "original",
    [
        pytest.param(
            lambda: RequestFactory().post(
                CHECKOUT, {"idempotency_key": "K", "doc": SimpleUploadedFile("a.txt", b"x")}
            ),
            id="files",
        ),
        pytest.param(
            lambda: RequestFactory().post(
                CHECKOUT, "item=book", content_type=URLENCODED, HTTP_IDEMPOTENCY_KEY="K"
            ),
            id="header-key",
        ),
        pytest.param(
            lambda: RequestFactory().post(CHECKOUT, "item=book", content_type="text/plain"),
            id="not-a-form",
        ),
        pytest.param(
            lambda: RequestFactory().put(CHECKOUT, "item=book", content_type=URLENCODED),
            id="not-a-post",
        ),
    ],
)
def test_what_hidden_fields_cannot_repeat_is_resent_by_reloading(original: Any) -> None:
    page = refusal_response(original(), exceptions.RequestInFlight())
    assert resend_form(page) is None
    assert "reload this page" in page.content.decode()
    assert not offers_a_fresh_form(page, CHECKOUT)


def test_texts_where_it_may_have_run_never_advise_a_new_key() -> None:
    in_flight = exceptions.RequestInFlight().detail
    assert "same request" in in_flight
    assert "same key" in in_flight
    assert "A new key would perform the operation a second time" in in_flight
    mismatch = exceptions.KeyMismatch().detail
    assert "send exactly the original request again" in mismatch
    assert "new key only for a new operation" in mismatch
    unavailable = exceptions.DatabaseUnavailable().detail
    assert "same Idempotency-Key" in unavailable
    assert "nothing was stored" not in unavailable  # a commit that failed may have landed
    crashed = json.loads(server_error(RequestFactory().post("/")).content)["detail"]
    assert "same Idempotency-Key" in crashed
    assert "nothing was stored" not in crashed  # a failure after the commit is a 500 too
    unauthenticated = exceptions.AuthenticationRequired().detail
    assert "same key" in unauthenticated


@pytest.mark.django_db
def test_a_changed_resubmission_is_not_offered_a_fresh_form(user: Any) -> None:
    client = Client()
    client.force_login(user)
    page = client.get(CHECKOUT).content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key is not None
    client.post(CHECKOUT, {"item": "book", "quantity": 2, "idempotency_key": key[1]})
    changed = client.post(CHECKOUT, {"item": "book", "quantity": 3, "idempotency_key": key[1]})
    assert changed.status_code == 422
    assert not offers_a_fresh_form(changed, CHECKOUT)
    assert resend_form(changed) is None
    assert "already did this" in changed.content.decode()
    assert Order.objects.count() == 1
