"""Hypothesis fuzz of client input (issue 9.2): random keys, references, bodies, charsets and
header combinations against views with every kind of reference field. Whatever arrives, the
answer is never a server error, and a refused request stores nothing."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Payment
from tests.conftest import client_for
from tests.factories import OrderFactory

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

FUZZ_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PATHS = [
    "/api/payments/",
    "/test/input/pay-pk/",
    "/test/input/pay-slug/",
    "/test/input/pay-hyperlinked/",
    "/test/input/pay-char/",
    "/test/input/pay-decimal/",
    "/test/input/guest-probe/",
]
HOSTILE_TEXT = [
    "\x00",
    "1\x00",
    "\ud800",
    "a\udfff",
    "\u2028",
    "\ufeff1",
    "\u0661",
    "\u00b2",
    "0" * 300,
]
HOSTILE_NUMBERS = ["1e999", "-1e999", "1" + "0" * 300, "1.0", "1E2", "-0.0", "0x1", "NaN", "1e-9"]
CHARSETS = [
    "",
    "utf-8",
    "UTF-8",
    "latin-1",
    "iso-8859-1",
    "utf-16",
    "ascii",
    "x-unknown",
    '"utf-8"',
]
MEDIA_TYPES = [
    "application/json",
    "application/merge-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=BoUnDaRy",
    "text/plain",
    "",
]
KEYS = ["k1", "k2", '"k1"', "k1,k2", '"k1", "k2"', "k1, k1", "\x00", "\u00e9", " k", "k" * 256]


def as_wsgi(value: str) -> str:
    """A header value as a WSGI server hands it to Django: the UTF-8 bytes as latin-1."""
    return value.encode("utf-8", "surrogatepass").decode("latin-1")


def references(order_pk: int) -> st.SearchStrategy[Any]:
    valid = st.sampled_from(
        [
            order_pk,
            str(order_pk),
            f"0{order_pk}",
            float(order_pk),
            "slug",
            "1.5",
            f"/api/orders/{order_pk}/",
            f"http://testserver/api/orders/0{order_pk}/?x=1",
        ]
    )
    return st.one_of(
        valid,
        st.one_of(
            st.sampled_from(HOSTILE_TEXT),
            st.text(max_size=12),
            st.integers(),
            st.floats(allow_nan=False),
            st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(HOSTILE_TEXT)), max_size=3),
            st.dictionaries(st.sampled_from(HOSTILE_TEXT), st.integers(), max_size=2),
            st.none(),
            st.booleans(),
        ),
    )


def encode(
    draw: Any, media_type: str, charset: str, fields: dict[str, Any], raw_numbers: list[str]
) -> bytes:
    """The fields in the media type's syntax, in the charset (bytes as such when it has none)."""
    encoding = charset.strip('"') or "utf-8"
    if media_type.endswith("json"):
        text = json.dumps(fields, ensure_ascii=draw(st.booleans()))
        for number in raw_numbers:  # lexemes json.dumps cannot write
            text = text.replace('"__number__"', number, 1)
    elif media_type.startswith("multipart/"):
        parts = [
            f'--BoUnDaRy\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        text = "".join(parts) + "--BoUnDaRy--\r\n"
    else:
        text = "&".join(f"{name}={value}" for name, value in fields.items())
    try:
        return text.encode(encoding, "surrogatepass")
    except (LookupError, UnicodeError):
        return text.encode("utf-8", "surrogatepass")


@pytest.mark.django_db(transaction=False)
def test_no_client_input_produces_a_server_error(user: Any, other_user: Any) -> None:
    alice, bob = client_for(user), client_for(other_user)
    guest = APIClient()
    guest.get("/test/input/start-session/")
    clients = {"alice": alice, "bob": bob, "guest": guest, "anonymous": APIClient()}
    for client in clients.values():
        client.raise_request_exception = False
    order = OrderFactory(owner=user, item="slug")
    answers: Counter[int] = Counter()

    @FUZZ_SETTINGS
    # Weighted towards requests that get through, so stored keys and references get re-used.
    @given(
        who=st.sampled_from(["alice", "alice", "alice", "guest", "guest", "bob", "anonymous"]),
        path=st.sampled_from(PATHS),
        reference=references(order.pk),
        raw_number=st.one_of(st.none(), st.none(), st.sampled_from(HOSTILE_NUMBERS)),
        amount=st.sampled_from(["1.00", "1.00", "1.00", "__number__", "\x00", 5]),
        key=st.one_of(
            st.sampled_from(KEYS[:3]), st.sampled_from(KEYS), st.text(max_size=20), st.none()
        ),
        media_type=st.one_of(st.just("application/json"), st.sampled_from(MEDIA_TYPES)),
        charset=st.one_of(st.just(""), st.sampled_from(CHARSETS)),
        query=st.sampled_from(["", "", "", "a=%00", "a=\x00", "a=\xed\xa0\x80", "order=1"]),
        accept=st.sampled_from([None] * 6 + ["application/json", "text/html", "\x00"]),
        data=st.data(),
    )
    def requests(
        who: str,
        path: str,
        reference: Any,
        raw_number: str | None,
        amount: Any,
        key: str | None,
        media_type: str,
        charset: str,
        query: str,
        accept: str | None,
        data: st.DataObject,
    ) -> None:
        if who == "guest":
            path = "/test/input/guest-probe/"  # the only view open to guests
        raw_numbers = [raw_number or "1", raw_number or "1"]
        order_value = "__number__" if raw_number is not None else reference
        fields = {"order": order_value, "amount": amount, "label": reference}
        content_type = media_type + (f"; charset={charset}" if charset else "")
        body = encode(data.draw, media_type, charset, fields, raw_numbers)
        headers: dict[str, str] = {"QUERY_STRING": query}
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = as_wsgi(key)
        if accept is not None:
            headers["HTTP_ACCEPT"] = accept
        records = IdempotencyRecord.objects.count()
        response = clients[who].generic(
            "POST", path, body, content_type=as_wsgi(content_type), **headers
        )
        answers[response.status_code] += 1
        assert response.status_code < 500, (path, body[:200], content_type, response.content[:300])
        if response.status_code in (400, 401, 403, 406, 413, 415):
            # A refusal or a validation error stores nothing: the key stays free.
            assert IdempotencyRecord.objects.count() == records

    requests()
    paid = Counter(Payment.objects.values_list("order_id", flat=True))
    assert all(count == 1 for count in paid.values()), paid
    assert sum(answers.values()) > 0
