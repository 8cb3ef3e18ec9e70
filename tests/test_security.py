"""Security: scopes are sealed from each other, nothing per-session is stored, and guessing
another client's keys yields nothing, not even the knowledge that a key is in use."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.http import HttpResponse
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.core import store
from django_idempotency.core.engine import perform_once
from django_idempotency.core.keys import parse_key
from django_idempotency.core.operation import Operation
from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from example_project.shop.models import Order
from tests.e2e.faults.figures import SECURITY, measure
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

ALICE = "probe-list|auth.user:1"
BOB = "probe-list|auth.user:2"


def operation(scope: str, key: str = "k", reference: str | None = None) -> Operation:
    return Operation(
        database="default",
        scope=scope,
        key=key,
        fingerprint="f" * 64,
        method="POST",
        path="/p/",
        reference=reference,
        ttl=timedelta(hours=1),
        lock_timeout=1.0,
    )


def counting_view(body: bytes) -> tuple[list[bytes], Any]:
    runs: list[bytes] = []

    def view() -> HttpResponse:
        runs.append(body)
        return HttpResponse(body, status=201, content_type="application/json")

    return runs, view


# -- scope isolation, tested directly on the engine and the store ---------------------------


def test_the_engine_never_answers_one_scope_from_another() -> None:
    alice_runs, alice_view = counting_view(b'{"secret": "alice"}')
    bob_runs, bob_view = counting_view(b'{"secret": "bob"}')

    first = perform_once(operation(ALICE), alice_view)
    # Same key, same fingerprint, same reference: only the scope differs.
    bob = perform_once(operation(BOB), bob_view)
    bob_again = perform_once(operation(BOB), bob_view)
    alice_again = perform_once(operation(ALICE), alice_view)

    assert (len(alice_runs), len(bob_runs)) == (1, 1)
    assert bob.content == bob_again.content == b'{"secret": "bob"}'
    assert alice_again.content == first.content == b'{"secret": "alice"}'
    assert bob_again["Idempotent-Replayed"] == alice_again["Idempotent-Replayed"] == "true"


def test_a_held_reference_only_binds_its_own_scope() -> None:
    alice_runs, alice_view = counting_view(b'{"paid": "alice"}')
    bob_runs, bob_view = counting_view(b'{"paid": "bob"}')
    perform_once(operation(ALICE, key="a", reference="order:7"), alice_view)
    # Another principal naming the same reference under another key runs its own request.
    bob = perform_once(operation(BOB, key="b", reference="order:7"), bob_view)
    assert bob.status_code == 201
    assert not bob.has_header("Idempotent-Replayed")
    assert (len(alice_runs), len(bob_runs)) == (1, 1)


def test_looking_up_a_key_in_another_scope_finds_and_counts_nothing() -> None:
    _, view = counting_view(b"{}")
    perform_once(operation(ALICE), view)
    now = timezone.now()

    for scope in (BOB, ALICE + " ", ALICE.upper(), "probe-list|auth.user:", ""):
        found = store.touch("default", scope=scope, fingerprint="f" * 64, now=now, key="k")
        assert found is None, scope
        found = store.touch(
            "default", scope=scope, fingerprint="f" * 64, now=now, reference="order:7"
        )
        assert found is None, scope

    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count, record.last_seen_at) == (0, 0, None)


# -- the same through HTTP ------------------------------------------------------------------


def test_another_user_with_the_same_key_and_body_gets_a_fresh_order(post, other_api) -> None:
    body = {"item": "book", "quantity": 1}
    mine = post("/api/orders/", body, key="order-1")
    theirs = post("/api/orders/", body, key="order-1", client=other_api)
    assert theirs.status_code == 201
    assert not theirs.has_header("Idempotent-Replayed")
    assert theirs.json()["id"] != mine.json()["id"]
    owners = dict(Order.objects.values_list("id", "owner__username"))
    assert owners == {mine.json()["id"]: "alice", theirs.json()["id"]: "bob"}


def test_a_key_without_credentials_is_refused_before_any_lookup(post, anon, assert_problem):
    post("/api/orders/", {"item": "book", "quantity": 1}, key="order-1")
    response = anon.post(
        "/api/orders/",
        {"item": "book", "quantity": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="order-1",
    )
    assert_problem(response, 401)
    record = IdempotencyRecord.objects.get()
    assert (record.replay_count, record.conflict_count) == (0, 0)


# -- nothing per-session is stored ----------------------------------------------------------


@override_settings(
    IDEMPOTENCY_REPLAY_HEADERS=["Content-Type", "Set-Cookie", "Date", "Location", "Vary"]
)
def test_no_cookie_token_or_session_secret_is_stored(user: Any, assert_problem) -> None:
    client = APIClient()
    client.force_login(user)  # a real session, through SessionAuthentication
    session_key = client.cookies["sessionid"].value
    token = Token.objects.create(user=user).key
    body = {"label": "a", "cookie": "per-session-secret", "headers": {"Location": "/x/"}}

    first = client.post(
        "/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY="k", HTTP_X_TOKEN=token
    )
    assert first.status_code == 201
    assert first.cookies["probe"].value == "per-session-secret"
    again = client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again["Idempotent-Replayed"] == "true"
    assert "probe" not in again.cookies
    assert not again.has_header("Set-Cookie")

    record = IdempotencyRecord.objects.get()
    names = {name.lower() for name, _ in record.response_headers}
    assert names <= {"content-type", "location", "vary"}
    # Whatever the columns hold, none of it is a credential of the request or the session.
    everything = stored_text()
    secrets = [session_key, token, "per-session-secret"]
    if "csrftoken" in client.cookies:
        secrets.append(client.cookies["csrftoken"].value)
    for secret in secrets:
        assert secret not in everything


def stored_text() -> str:
    """Every column of every record and event, as text."""
    with connection.cursor() as cursor:
        rows: list[Any] = []
        for model in (IdempotencyRecord, IdempotencyEvent):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)}")
            rows.extend(cursor.fetchall())
    return json.dumps(rows, default=_as_text)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("latin-1")
    return str(value)


# -- key guessing ---------------------------------------------------------------------------


def test_guessing_another_users_keys_yields_nothing(post, other_api, user) -> None:
    """Bob knows alice's key scheme, her exact keys and bodies. He learns nothing from them:
    every answer is his own fresh order, exactly like one under a key nobody ever used."""
    alice_keys = [f"order-{n}" for n in range(1, 21)]
    body = {"item": "book", "quantity": 1}
    for key in alice_keys:
        assert post("/api/orders/", body, key=key).status_code == 201
    alice_orders = set(Order.objects.filter(owner=user).values_list("id", flat=True))
    before = list(IdempotencyRecord.objects.order_by("id").values())
    guesses = [*alice_keys, *(f"order-{n}" for n in range(21, 61)), "order-1 ", '"order-2"']

    with measure(
        "Key guessing",
        section=SECURITY,
        what="Bob replays alice's exact keys and bodies, then 40 more keys of her scheme "
        "and quoted/space variants: every answer must be his own, indistinguishable from a "
        "key nobody used, and alice's records must not move.",
    ) as sheet:
        shapes = set()
        bobs: dict[str, bytes] = {}
        for guess in guesses:
            response = post("/api/orders/", body, key=guess, client=other_api)
            sheet.requests += 1
            sheet.inputs_tried += 1
            if response.status_code == 400:
                # Only the malformed variant ("order-1 ") may be refused, and as malformed.
                assert guess != guess.strip(), response.content
                continue
            assert response.status_code == 201, (guess, response.content)
            assert response.json()["id"] not in alice_orders, guess
            key = parse_key(guess)
            assert key is not None
            if response.has_header("Idempotent-Replayed"):
                assert response.content == bobs[key]  # his own earlier answer, nothing else
            else:
                bobs[key] = response.content
                shapes.add(tuple(sorted(response.headers)))
        sheet.notes["leaked"] = 0
        # One shape of answer for alice's keys and for fresh ones: no oracle.
        assert len(shapes) == 1, shapes
        alice_records = IdempotencyRecord.objects.filter(scope__endswith=f":{user.pk}")
        assert list(alice_records.order_by("id").values()) == before
        assert IdempotencyEvent.objects.filter(scope__endswith=f":{user.pk}").count() == 0
        assert Order.objects.filter(owner=user).count() == len(alice_keys)


def test_a_guessed_key_with_another_body_is_no_mismatch_oracle(post, other_api) -> None:
    post("/test/probe/", {"label": "alice"}, key="known")
    # Had alice's record answered, bob would get a 422 telling him the key is in use.
    response = post("/test/probe/", {"label": "other"}, key="known", client=other_api)
    assert response.status_code == 201
    assert Execution.objects.count() == 2
