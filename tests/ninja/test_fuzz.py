"""Hypothesis fuzz of the django-ninja door's references and keys (``testapp/ninja_doors.py``):
JSON bodies whose reference field holds any JSON value (text with NUL and lone surrogates, huge
and non-finite numbers written as lexemes ``json.dumps`` cannot write, objects, lists), extra
members, odd charsets and media types, keys of any text.

Whatever arrives: never a 500 (a refusal is problem+json), never a false replay (a replayed answer
is only ever that of a request whose body reads the same), one run per key, and one payment per
order on each route however its number is spelt.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from django_idempotency.models import IdempotencyRecord
from tests.celery.test_fuzz_tasks import same
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROBE = "/test/doors/ninja/probe/"
ASYNC_PROBE = "/test/doors/ninja/async-probe/"
PAYMENTS = "/test/doors/ninja/payments/"
REFUNDS = "/test/doors/ninja/refunds/"
GUESTS = "/test/doors/ninja/guests/"
#: Each path and the member its reference is read from.
REFERENCE_FIELD = {PROBE: "ref", ASYNC_PROBE: "ref", PAYMENTS: "order", REFUNDS: "order"}
HOSTILE_TEXT = [
    "",
    "\x00",
    "7\x00",
    "\ud800",
    "\U0001f600",
    "07",
    " 7",
    "7.0",
    "\u0667",
    "9" * 5000,
    "sha256:" + "0" * 64,
    "r" * 300,
]
#: Number lexemes a client may send that ``json.dumps`` never writes.
LEXEMES = ["1e999", "-1e999", "NaN", "Infinity", "7.0", "7E0", "07", "1" + "0" * 5000, "-0"]
KEYS = ["k1", "k2", "k3"]
texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(st.characters(exclude_categories=())))
json_values = st.recursive(
    st.one_of(
        texts,
        st.integers(),
        st.sampled_from([7, 8, 2**63, -(2**63) - 1, 10**300]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(texts, inner, max_size=2)),
    max_leaves=4,
)


@dataclass
class Request:
    path: str
    members: dict[str, Any]
    lexeme: str | None
    charset: str
    media_type: str
    key: str | None

    def body(self) -> bytes:
        text = json.dumps(self.members)
        if self.lexeme is not None:
            text = text.replace('"__lexeme__"', self.lexeme, 1)
        try:
            return text.encode(self.charset.strip('"') or "utf-8", "surrogatepass")
        except (LookupError, UnicodeError):
            return text.encode("utf-8", "surrogatepass")

    def send(self, client: Client) -> Any:
        headers = {}
        if self.key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = self.key.encode("utf-8", "surrogatepass").decode(
                "latin-1"
            )
        charset = f"; charset={self.charset}" if self.charset else ""
        return client.generic("POST", self.path, self.body(), self.media_type + charset, **headers)

    def read(self) -> Any:
        """The body as a JSON parser reads it; ``None`` if it cannot."""
        try:
            return json.loads(self.body().decode(self.charset.strip('"') or "utf-8"))
        except (ValueError, LookupError, RecursionError):
            return None


@dataclass
class Ledger:
    runs: dict[str, Any] = field(default_factory=dict)
    keys: dict[tuple[str, str, str], str] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)

    def judge(self, request: Request, response: Any, who: str, records: int) -> str | None:
        status = response.status_code
        self.statuses[status] += 1
        assert status < 500, (request, response.content[:500])
        if status >= 400 and response.get("Content-Type") == "application/problem+json":
            document = json.loads(response.content)
            assert {"type", "title", "status", "detail"} <= document.keys(), document
            assert document["status"] == status
        if status in (400, 401, 403, 413, 415, 422):
            assert IdempotencyRecord.objects.count() == records, (request, status)
        if status != 201:
            return None
        made = str(response.json()["id"])
        read = request.read()
        if response.get("Idempotent-Replayed") == "true":
            assert made in self.runs, ("a replay of nothing that ran", made)
            assert same(self.runs[made], read), ("false replay", self.runs[made], read)
        else:
            assert made not in self.runs, made
            self.runs[made] = read
        if request.key in KEYS:
            first = self.keys.setdefault((who, request.path, request.key), made)
            assert first == made, ("two runs under one key", first, made)
        return made


def test_no_ninja_request_is_a_server_error_or_a_false_replay(user: Any, other_user: Any) -> None:
    clients = {}
    for name, owner in (("alice", user), ("bob", other_user)):
        token, _ = Token.objects.get_or_create(user=owner)
        clients[name] = Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    guest = Client()
    guest.get("/test/input/start-session/")  # a guest with a session
    clients["guest"] = guest
    for client in clients.values():
        client.raise_request_exception = False
    ledger = Ledger()

    @st.composite
    def requests(draw: Any) -> tuple[str, Request]:
        who = draw(st.sampled_from(["alice", "alice", "alice", "bob", "guest"]))
        path = GUESTS if who == "guest" else draw(st.sampled_from(list(REFERENCE_FIELD)))
        members: dict[str, Any] = {}
        name = REFERENCE_FIELD.get(path)
        lexeme = None
        if name is not None and draw(st.integers(0, 5)):
            kind = draw(st.sampled_from(["number", "number", "text", "lexeme", "any"]))
            if kind == "number":
                members[name] = draw(st.sampled_from([7, 8, "7", "07", 7.0]))
            elif kind == "text":
                members[name] = draw(texts)
            elif kind == "lexeme":
                members[name], lexeme = "__lexeme__", draw(st.sampled_from(LEXEMES))
            else:
                members[name] = draw(json_values)
        extra = draw(st.dictionaries(texts, json_values, max_size=2))
        # The probe's own fields are its own: a label too long for its column is its 500.
        members.update({k: v for k, v in extra.items() if k not in ("label", "status", "sleep")})
        media_type = draw(
            st.sampled_from(
                ["application/json"] * 4
                + ["application/x-www-form-urlencoded", "text/plain", "application/ld+json"]
            )
        )
        key = draw(
            st.one_of(
                st.sampled_from(KEYS),
                st.sampled_from(KEYS),
                st.sampled_from(['"k1"', "k1,k2", "\x00", " k1", "k" * 256, "é"]),
                st.text(max_size=6),
                st.none(),
            )
        )
        return who, Request(
            path=path,
            members=members,
            lexeme=lexeme,
            charset=draw(st.sampled_from(["", "", "utf-8", "utf-16", "latin-1", "x-unknown"])),
            media_type=media_type,
            key=key,
        )

    @FUZZ_SETTINGS
    @given(sent=requests(), again=st.booleans())
    def send(sent: tuple[str, Request], again: bool) -> None:
        who, request = sent
        records = IdempotencyRecord.objects.count()
        made = ledger.judge(request, request.send(clients[who]), who, records)
        if made is not None and again:
            repeated = request.send(clients[who])
            assert ledger.judge(request, repeated, who, IdempotencyRecord.objects.count()) == made
            assert repeated["Idempotent-Replayed"] == "true"

    send()
    assert ledger.runs, ledger.statuses
    # A reference holds for its route: one payment and one refund of each order at most,
    # however the order's number was spelt and whichever key was used (alice's and bob's apart).
    labels = Counter(Execution.objects.values_list("label", flat=True))
    orders = {
        label: count for label, count in labels.items() if label[:7] in ("payment", "refund ")
    }
    assert all(count <= 2 for count in orders.values()), orders


# -- what the fuzz found -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/jsonx"]
)
def test_a_reference_is_read_as_ninja_reads_the_body_whatever_its_content_type(
    user: Any, content_type: str, assert_problem: Any
) -> None:
    """ninja parses a body payload as JSON whatever the Content-Type says: the door read the
    reference only from an ``application/json`` body, so another Content-Type paid order 7 a
    second time under a second key."""
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    paid = client.post(PAYMENTS, {"order": 7}, "application/json", HTTP_IDEMPOTENCY_KEY="k1")
    again = client.generic(
        "POST", PAYMENTS, b'{"order": 7, "note": 1}', content_type, HTTP_IDEMPOTENCY_KEY="k2"
    )

    assert paid.status_code == 201
    assert_problem(again, 409, "idempotency-reference-conflict")
    assert Execution.objects.filter(label="payment 7").count() == 1
