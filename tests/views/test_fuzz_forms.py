"""Hypothesis fuzz of the plain Django door's forms: the example's checkout
(``POST /shop/checkout/``) and the test views of ``tests/testapp/views_doors.py``, sent form fields
of any name and value (NUL, lone surrogates, huge, repeated), urlencoded or multipart, in odd
charsets, with issued keys that are genuine, another form's, tampered, truncated or garbage, and
references in form fields.

Whatever arrives: never a 500 (a refusal is a 4xx problem+json or the HTML refusal page), and
never a false replay (a replayed answer is only ever that of a submission with the same fields).
The refusal page itself is rendered for every such request and every kind of refusal.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client, RequestFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_idempotency.exceptions import (
    IdempotencyError,
    InvalidIssuedKey,
    KeyMismatch,
    MissingKey,
    ReferenceConflict,
    RequestInFlight,
)
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import refusal_response
from example_project.shop.models import Payment
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY_INPUT = re.compile(r'name="idempotency_key" value="([^"]+)"')
ORDER_PAGE = re.compile(r"^/shop/orders/(\d+)/$")
CHECKOUT = "/shop/checkout/"
PLAIN = "/test/doors/plain/"
CLASS = "/test/doors/class/"
PAYMENT = "/test/doors/payment/"
SESSION = "/test/doors/session/"  # guests, by their session
PATHS = [CHECKOUT, CHECKOUT, PLAIN, CLASS, PAYMENT]
#: Fields the test views read as numbers or store in a 200-character column: their own 500s,
#: not the door's, so the fuzz gives them only values they take.
PROBE_FIELDS = {"label", "status", "sleep"}
HOSTILE_TEXT = [
    "",
    "\x00",
    "1\x00",
    "\ud800",
    "\udfff",
    "\U0001f600",
    "\ufeff7",
    "\u0667",  # ARABIC-INDIC DIGIT SEVEN
    " 7 ",
    "7_0",
    "+7",
    "0" * 300,
    "9" * 5000,
    "=&;%",
    '"><script>',
    "%00",
    "%ED%A0%80",  # a lone surrogate, percent-encoded
    "\r\n--BoUnDaRy\r\n",
]
#: Mostly none: Django refuses a urlencoded body in any charset but UTF-8 (its own 400).
CHARSETS = ["", "", "", "", "", "", "utf-8", "latin-1", "utf-16", "x-unknown", '"utf-8"']
MEDIA_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data"]
texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(st.characters(exclude_categories=())))
names = st.one_of(
    st.sampled_from(["item", "quantity", "order", "amount", "ref", "idempotency_key", "x"]),
    texts,
).filter(lambda name: name not in PROBE_FIELDS)


def tamper(draw: Any, key: str) -> str:
    """An issued key, changed the way a careless client or an attacker would."""
    how = draw(st.sampled_from(["cut", "flip", "append", "quote", "case", "garbage"]))
    if how == "cut":
        return key[: draw(st.integers(0, len(key) - 1))]
    if how == "flip":
        at = draw(st.integers(0, len(key) - 1))
        return key[:at] + ("A" if key[at] != "A" else "B") + key[at + 1 :]
    if how == "append":
        return key + draw(st.sampled_from(["x", ":", "\x00", "\ud800", " ", ":" + key]))
    if how == "quote":
        return f'"{key}"'
    if how == "case":
        return key.swapcase()
    return draw(texts)


@dataclass
class Submission:
    path: str
    media_type: str
    charset: str
    fields: list[tuple[str, str]]
    header_key: str | None = None
    accept: str = "text/html"

    def content_type(self) -> str:
        boundary = "; boundary=BoUnDaRy" if self.media_type.startswith("multipart/") else ""
        charset = f"; charset={self.charset}" if self.charset else ""
        return self.media_type + boundary + charset

    def body(self) -> bytes:
        encoding = self.charset.strip('"') or "utf-8"
        if self.media_type.startswith("multipart/"):
            text = "".join(
                f'--BoUnDaRy\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                for name, value in self.fields
            )
            text += "--BoUnDaRy--\r\n"
        else:
            text = "&".join(
                f"{quote(name, errors='surrogatepass')}={quote(value, errors='surrogatepass')}"
                for name, value in self.fields
            )
        try:
            return text.encode(encoding, "surrogatepass")
        except (LookupError, UnicodeError):
            return text.encode("utf-8", "surrogatepass")

    def send(self, client: Client) -> Any:
        headers: dict[str, str] = {"HTTP_ACCEPT": self.accept}
        if self.header_key is not None:
            wsgi = self.header_key.encode("utf-8", "surrogatepass").decode("latin-1")
            headers["HTTP_IDEMPOTENCY_KEY"] = wsgi
        return client.generic("POST", self.path, self.body(), self.content_type(), **headers)

    def seen(self) -> Any:
        """The fields as the view reads them (``request.POST``), by name; ``None`` if unreadable."""
        request = RequestFactory().generic("POST", self.path, self.body(), self.content_type())
        try:
            return sorted((name, request.POST.getlist(name)) for name in request.POST)
        except Exception:
            return None


@dataclass
class Ledger:
    """Each run's submission (as its view read it), by what it made: an Execution, a Payment
    or an Order, named in the answer."""

    runs: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: The run each genuine issued key made, by visitor and form.
    keys: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)

    def judge(
        self, submission: Submission, response: Any, records: int, who: str, key: str | None
    ) -> tuple[str, str] | None:
        """Check one answer; the run it made or replayed, if any. ``key``: the genuine issued
        key the submission carries, if that is what the door reads."""
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, (submission, response.content[:500])
        if status in (400, 403, 413, 415):
            # Refused (by the door, by the form, or by Django's parser): the key stays free.
            assert IdempotencyRecord.objects.count() == records, (submission, status)
        if response.get("Content-Type") == "application/problem+json":
            document = json.loads(response.content)
            assert {"type", "title", "status", "detail"} <= document.keys(), document
            assert document["status"] == status
        made = made_by(submission.path, response)
        if made is None:
            return None
        seen = submission.seen()
        if response.get("Idempotent-Replayed") == "true":
            assert made in self.runs, ("a replay of nothing that ran", made)
            assert self.runs[made] == seen, ("false replay", self.runs[made], seen)
        else:
            assert made not in self.runs, made
            self.runs[made] = seen
        if key is not None:
            first = self.keys.setdefault((who, submission.path, key), made)
            assert first == made, ("two runs under one key", first, made)
        return made


def made_by(path: str, response: Any) -> tuple[str, str] | None:
    if path == CHECKOUT:
        found = (
            ORDER_PAGE.match(response.get("Location", "")) if response.status_code == 303 else None
        )
        return None if found is None else ("order", found.group(1))
    if response.status_code == 201 and response.get("Content-Type") == "application/json":
        return (path, str(json.loads(response.content)["id"]))
    return None


def issued_keys(client: Client, path: str, count: int) -> list[str]:
    keys = []
    for _ in range(count):
        page = client.get(path)
        match = KEY_INPUT.search(page.content.decode())
        assert match is not None, (path, page.status_code, page.content[:300])
        keys.append(match.group(1))
    return keys


REFUSALS: list[IdempotencyError] = [
    RequestInFlight(),
    KeyMismatch(),
    ReferenceConflict("order:1"),
    InvalidIssuedKey(),
    MissingKey("This endpoint requires a key."),
]


def test_no_form_submission_is_a_server_error_or_a_false_replay(user: Any, other_user: Any) -> None:
    alice = Client(raise_request_exception=False)
    alice.force_login(user)
    bob = Client(raise_request_exception=False)
    bob.force_login(other_user)
    guest = Client(raise_request_exception=False)
    clients = {"alice": alice, "bob": bob, "guest": guest}
    keys = {path: issued_keys(alice, path, 12) for path in set(PATHS)}
    keys[SESSION] = issued_keys(guest, SESSION, 12)
    orders = [str(OrderFactory(owner=user).pk) for _ in range(2)]
    ledger = Ledger()

    def values(name: str, hostile: bool = True) -> st.SearchStrategy[str]:
        valid = {
            "item": st.sampled_from(["book", "pen"]),
            "quantity": st.sampled_from(["1", "2", "02", "2147483648", "-1", "1e3"]),
            "order": st.sampled_from([*orders, f"0{orders[0]}", "999999"]),
            "amount": st.sampled_from(["1.00", "5", "1.0", "NaN", "1e999"]),
            "ref": st.sampled_from(["7", "07", "8"]),
        }.get(name)
        if valid is None:
            return texts
        return st.one_of(valid, valid, valid, texts) if hostile else valid

    @st.composite
    def submissions(draw: Any) -> tuple[str, Submission]:
        who = draw(st.sampled_from(["alice"] * 6 + ["bob", "guest", "guest"]))
        path = draw(st.sampled_from(PATHS + [SESSION] * (3 if who == "guest" else 0)))
        real = {
            CHECKOUT: ["item", "quantity"],
            PAYMENT: ["order", "amount"],
            PLAIN: ["ref"],
            CLASS: [],
            SESSION: [],
        }[path]
        # Half of them as a browser would send the form (so that runs, replays and references
        # happen), half with anything in it.
        hostile = draw(st.booleans())
        fields = [
            (name, draw(values(name, hostile)))
            for name in real
            if not hostile or draw(st.integers(0, 9))
        ]
        if fields and draw(st.integers(0, 9)) == 0:  # a field twice: the view reads the last
            fields.append((fields[0][0], draw(values(fields[0][0]))))
        if hostile:
            fields += draw(st.lists(st.tuples(names, texts), max_size=2))
        key_kind = draw(
            st.sampled_from(
                ["genuine"] * (4 if hostile else 12) + ["other form", "tampered", "none"]
            )
        )
        mine = keys[path]
        key = {
            "genuine": lambda: draw(st.sampled_from(mine)),
            "other form": lambda: draw(st.sampled_from(keys[PLAIN if path != PLAIN else CLASS])),
            "tampered": lambda: tamper(draw, draw(st.sampled_from(mine))),
            "none": lambda: None,
        }[key_kind]()
        header_key = None
        if key is not None:
            if path == PLAIN and draw(st.integers(0, 3)) == 0:
                header_key = key  # a key the client made: any key is taken in the header
            else:
                at = draw(st.integers(0, len(fields)))
                fields.insert(at, ("idempotency_key", key))
                if draw(st.integers(0, 9)) == 0:  # the field twice
                    fields.append(("idempotency_key", draw(st.sampled_from([key, *mine]))))
        if path in (PLAIN, CLASS, SESSION):
            fields.append(("label", "fuzz"))
        fields = draw(st.permutations(fields))
        bulk = draw(st.sampled_from([None] * 30 + ["many", "huge"])) if hostile else None
        if bulk == "many":  # more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS
            fields += [("f", "1")] * 1001
        elif bulk == "huge":  # more than DATA_UPLOAD_MAX_MEMORY_SIZE
            fields.append(("f", "x" * 2_700_000))
        return who, Submission(
            path=path,
            media_type=draw(st.sampled_from(MEDIA_TYPES)),
            charset=draw(st.sampled_from(CHARSETS)) if hostile else "",
            fields=fields,
            header_key=header_key,
            accept=draw(st.sampled_from(["text/html", "text/html", "application/json"])),
        )

    @FUZZ_SETTINGS
    @given(sent=submissions(), again=st.booleans())
    def submit(sent: tuple[str, Submission], again: bool) -> None:
        who, submission = sent
        client = clients[who]
        key = genuine_key(submission, keys[submission.path])
        records = IdempotencyRecord.objects.count()
        made = ledger.judge(submission, submission.send(client), records, who, key)
        if made is not None and again:
            # The same submission again (a double click, a reload): its answer, replayed.
            records = IdempotencyRecord.objects.count()
            repeated = submission.send(client)
            assert ledger.judge(submission, repeated, records, who, key) == made
            assert repeated["Idempotent-Replayed"] == "true"
        request = RequestFactory().generic(
            "POST", submission.path, submission.body(), submission.content_type()
        )
        for error in REFUSALS:
            page = refusal_response(request, error)
            assert 400 <= page.status_code < 500, error

    submit()
    assert len(ledger.runs) > 0, ledger.statuses
    paid = Counter(Payment.objects.values_list("order_id", flat=True))
    assert all(count == 1 for count in paid.values()), paid  # the reference: one per order


def genuine_key(submission: Submission, issued: list[str]) -> str | None:
    """The issued key the door reads from the form (its last value), if it is a genuine one."""
    if submission.header_key is not None:
        return None
    values = [value for name, value in submission.fields if name == "idempotency_key"]
    return values[-1] if values and values[-1] in issued else None
