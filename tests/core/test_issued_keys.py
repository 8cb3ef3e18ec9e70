"""Server-issued keys: ``POST /api/idempotency-keys/`` and a view that requires them
(``POST /api/transfers/``, ``idempotency_key_source = "issued"``), and how old a key may be on
every door that takes them (API, form, ninja): age limits what a key starts, never a replay."""

from __future__ import annotations

import json
import re
import runpy
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import signing
from django.test import Client, override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token

from django_idempotency.core.issued_keys import issue_key, verify_issued_key
from django_idempotency.core.principals import user_principal
from django_idempotency.exceptions import InvalidIssuedKey, IssuedKeyExpired
from django_idempotency.models import IdempotencyRecord
from example_project import settings as example_settings
from example_project.shop.models import Order, Transfer
from tests.conftest import client_for, race
from tests.example.test_checkout import browser, rendered_key
from tests.testapp.models import Execution

pytestmark = pytest.mark.drf

KEYS = "/api/idempotency-keys/"
TRANSFERS = "/api/transfers/"
BODY = {"amount": "12.50", "to": "DE89 3704 0044 0532 0130 00"}


def issued(api: Any) -> str:
    response = api.post(KEYS)
    assert response.status_code == 201, response.content
    return str(response.json()["key"])


@pytest.mark.django_db
class TestIssuing:
    def test_issues_a_key_with_its_expiry(self, api: Any) -> None:
        response = api.post(KEYS)
        assert response.status_code == 201
        assert response["Cache-Control"] == "no-store"
        document = response.json()
        assert set(document) == {"key", "expires_at"}
        expires_at = parse_datetime(document["expires_at"])
        assert expires_at is not None
        assert timedelta(hours=23) < expires_at - timezone.now() <= timedelta(hours=24)
        assert issued(api) != document["key"]

    def test_anonymous_gets_none(self, anon: Any, assert_problem: Any) -> None:
        assert_problem(anon.post(KEYS), 401)

    def test_expiry_never_outlives_the_record(self) -> None:
        with override_settings(IDEMPOTENCY_TTL=60, IDEMPOTENCY_ISSUED_KEY_MAX_AGE=3600):
            key = issue_key("auth.user:1")
            assert key.expires_at - timezone.now() <= timedelta(seconds=60)


class TestVerification:
    def test_bound_to_principal_and_endpoint(self) -> None:
        form_key = issue_key("auth.user:1", "checkout").key
        verify_issued_key(form_key, principal="auth.user:1", endpoint="checkout")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(form_key, principal="auth.user:2", endpoint="checkout")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(form_key, principal="auth.user:1", endpoint="transfer")
        api_key = issue_key("auth.user:1").key  # any endpoint, this principal only
        verify_issued_key(api_key, principal="auth.user:1", endpoint="transfer")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(api_key, principal="auth.user:2", endpoint="transfer")

    def test_verification_checks_the_signature_not_the_age(self) -> None:
        """The age is the engine's to judge, and only for a key that would start something."""
        key = issue_key("auth.user:1").key
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=-1):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")
            with pytest.raises(InvalidIssuedKey) as refused:
                verify_issued_key(key, principal="auth.user:2", endpoint="x")
        assert not isinstance(refused.value, IssuedKeyExpired)

    def test_secret_rotation_keeps_keys_in_flight(self) -> None:
        with override_settings(SECRET_KEY="old-secret-old-secret-old-secret-old-secret"):
            key = issue_key("auth.user:1").key
        with override_settings(
            SECRET_KEY="new-secret-new-secret-new-secret-new-secret",
            SECRET_KEY_FALLBACKS=["old-secret-old-secret-old-secret-old-secret"],
        ):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")
        with (
            override_settings(SECRET_KEY="new-secret-new-secret-new-secret-new-secret"),
            pytest.raises(InvalidIssuedKey),
        ):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")


@pytest.mark.django_db
class TestTransfers:
    def test_issued_key_creates_then_replays(self, api: Any, post: Any) -> None:
        key = issued(api)
        first = post(TRANSFERS, BODY, key=key)
        assert first.status_code == 201, first.content
        assert set(first.json()) == {"id", "amount", "to", "created_at"}
        second = post(TRANSFERS, BODY, key=key)
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert Transfer.objects.count() == 1

    def test_client_made_key_is_400(self, post: Any, assert_problem: Any) -> None:
        assert_problem(post(TRANSFERS, BODY, key="my-own-key"), 400, "invalid-issued-key")
        assert Transfer.objects.count() == 0

    def test_missing_key_is_400(self, post: Any, assert_problem: Any) -> None:
        assert_problem(post(TRANSFERS, BODY), 400, "missing-idempotency-key")

    def test_tampered_key_is_400(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        nonce, rest = key.split(":", 1)
        tampered = nonce[::-1] + ":" + rest
        assert_problem(post(TRANSFERS, BODY, key=tampered), 400, "invalid-issued-key")

    def test_key_of_another_user_is_400(
        self, post: Any, other_api: Any, assert_problem: Any
    ) -> None:
        bobs = issued(other_api)
        assert_problem(post(TRANSFERS, BODY, key=bobs), 400, "invalid-issued-key")
        assert Transfer.objects.count() == 0

    def test_expired_key_is_400(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=-1):
            assert_problem(post(TRANSFERS, BODY, key=key), 400, "issued-key-expired")

    def test_mismatch_under_an_issued_key(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        post(TRANSFERS, BODY, key=key)
        assert_problem(post(TRANSFERS, {**BODY, "amount": "13.00"}, key=key), 422)
        assert Transfer.objects.count() == 1

    def test_invalid_body_releases_the_issued_key(self, api: Any, post: Any) -> None:
        key = issued(api)
        assert post(TRANSFERS, {**BODY, "amount": "-1"}, key=key).status_code == 400
        assert post(TRANSFERS, BODY, key=key).status_code == 201
        assert Transfer.objects.count() == 1

    def test_other_views_keep_taking_client_keys(self, post: Any) -> None:
        assert post("/api/orders/", {"item": "a", "quantity": 1}, key="mine").status_code == 201


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_of_one_transfer_run_once(user: Any) -> None:
    client = client_for(user)
    key = issued(client)
    copies = 8

    def one(_: int) -> Any:
        return client.post(TRANSFERS, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    responses = race(copies, one)
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Transfer.objects.count() == 1


@pytest.mark.django_db
def test_openapi_documents_the_issuing_view(api: Any) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/idempotency-keys/"]["post"]
    assert "requestBody" not in operation
    assert list(operation["responses"]) == ["201"]
    transfer = schema["paths"]["/api/transfers/"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in transfer["parameters"])


# -- The key's age limits what it may start, never the replay of what it started ---------------

CHECKOUT = "/shop/checkout/"
NINJA = "/test/issued/ninja/probe/"
KEY_INPUT = re.compile(r'<input type="hidden" name="idempotency_key" value="([^"]+)">')
MAX_AGE = timedelta(minutes=5)
# Beyond MAX_AGE: how old a key is, or how far an app server's clock runs ahead.
MINUTES = timedelta(minutes=10)


@dataclass(frozen=True)
class Door:
    """A door that takes issued keys, as its client uses it: get a key, send the request."""

    client: Callable[[Any], Any]
    issue: Callable[[Any, Any], str]
    send: Callable[[Any, str, str], Any]
    rows: Callable[[], int]


def _browser(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _bearer(user: Any) -> Client:
    token, _ = Token.objects.get_or_create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")


def _rendered_key(client: Client, user: Any) -> str:
    match = KEY_INPUT.search(client.get(CHECKOUT).content.decode())
    assert match is not None
    return match.group(1)


DOORS = {
    "api": Door(
        client=client_for,
        issue=lambda client, user: issued(client),
        send=lambda client, key, to: client.post(
            TRANSFERS, {**BODY, "to": to}, format="json", HTTP_IDEMPOTENCY_KEY=key
        ),
        rows=lambda: Transfer.objects.count(),
    ),
    "form": Door(
        client=_browser,
        issue=_rendered_key,
        send=lambda client, key, item: client.post(
            CHECKOUT,
            {"item": item, "quantity": 2, "idempotency_key": key},
            HTTP_ACCEPT="application/json",
        ),
        rows=lambda: Order.objects.count(),
    ),
    "ninja": Door(
        client=_bearer,
        issue=lambda client, user: issue_key(user_principal(user) or "").key,
        send=lambda client, key, label: client.post(
            NINJA,
            json.dumps({"label": label}),
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY=key,
        ),
        rows=lambda: Execution.objects.count(),
    ),
}
doors = pytest.mark.parametrize("door", list(DOORS.values()), ids=list(DOORS))


@pytest.fixture
def app_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """``app_clock(by)``: this app server's clock runs ``by`` off, the database's does not.

    Both readings an app server takes move: ``timezone.now`` and the signer's ``time.time``.
    """
    real_now, real_time = timezone.now, time.time

    def skew(by: timedelta) -> None:
        monkeypatch.setattr(timezone, "now", lambda: real_now() + by)
        clock = SimpleNamespace(time=lambda: real_time() + by.total_seconds())
        monkeypatch.setattr(signing, "time", clock)

    return skew


def assert_replayed(again: Any, first: Any) -> None:
    assert again.status_code == first.status_code, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


@pytest.mark.urls("tests.urls_issued_keys")
@pytest.mark.django_db
@doors
class TestKeyAge:
    def test_a_retry_after_the_max_age_replays(self, door: Door, user: Any, app_clock: Any) -> None:
        client = door.client(user)
        app_clock(-MINUTES)  # the key was issued ten minutes ago
        key = door.issue(client, user)
        app_clock(timedelta(0))
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MINUTES * 2):
            first = door.send(client, key, "a")
        assert first.status_code in (201, 303), first.content
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MAX_AGE):
            assert_replayed(door.send(client, key, "a"), first)
            # Another request under the old key is told apart from the one that ran.
            assert door.send(client, key, "b").status_code == 422
        assert door.rows() == 1

    @pytest.mark.concurrent_db
    @pytest.mark.mysql_rr
    def test_a_retry_through_a_server_whose_clock_runs_ahead_replays(
        self, door: Door, user: Any, app_clock: Any
    ) -> None:
        """App servers share PostgreSQL's clock (SQLite has one host and the app's clock)."""
        client = door.client(user)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MAX_AGE):
            key = door.issue(client, user)
            first = door.send(client, key, "a")
            app_clock(MINUTES)
            assert_replayed(door.send(client, key, "a"), first)
        assert door.rows() == 1

    def test_an_expired_key_starts_nothing(
        self, door: Door, user: Any, app_clock: Any, assert_problem: Any
    ) -> None:
        client = door.client(user)
        app_clock(-MINUTES)
        key = door.issue(client, user)
        app_clock(timedelta(0))
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MAX_AGE):
            for _attempt in range(2):  # what the refusal says holds: nothing ran, nothing stored
                refused = assert_problem(door.send(client, key, "a"), 400, "issued-key-expired")
                assert "nothing was carried out" in refused["detail"]
        assert door.rows() == 0
        assert not IdempotencyRecord.objects.exists()

    def test_a_key_issued_by_a_server_whose_clock_runs_ahead_never_outlives_its_record(
        self, door: Door, user: Any, app_clock: Any
    ) -> None:
        """The key's age is read from the issuing server's clock, the record's from the
        database's: a key stamped minutes ahead must not still start an operation once the
        record of the operation it started has expired (that retry would run it again)."""
        client = door.client(user)
        lifetime = timedelta(seconds=2)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=lifetime, IDEMPOTENCY_TTL=lifetime):
            app_clock(MINUTES)  # the server that issued the key runs ten minutes ahead
            key = door.issue(client, user)
            app_clock(timedelta(0))
            first = door.send(client, key, "a")
            assert first.status_code in (201, 303), first.content
            time.sleep(lifetime.total_seconds() + 0.5)  # the record's lifetime passes
            again = door.send(client, key, "a")
        assert door.rows() == 1, again.status_code

    @pytest.mark.concurrent_db
    @pytest.mark.mysql_rr
    def test_a_server_whose_clock_runs_ahead_accepts_a_fresh_key(
        self, door: Door, user: Any, app_clock: Any
    ) -> None:
        """The age is the database's to judge: app servers cannot disagree about a key."""
        client = door.client(user)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MAX_AGE):
            key = door.issue(client, user)
            app_clock(MINUTES)
            first = door.send(client, key, "a")
        assert first.status_code in (201, 303), first.content
        assert door.rows() == 1


@pytest.mark.parametrize(
    ("environ", "seconds"), [({"IDEMPOTENCY_ISSUED_KEY_MAX_AGE": "90"}, 90), ({}, 24 * 3600)]
)
def test_the_example_reads_the_max_age_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], seconds: float
) -> None:
    monkeypatch.delenv("IDEMPOTENCY_ISSUED_KEY_MAX_AGE", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    example = runpy.run_path(str(Path(example_settings.__file__)))
    assert example["IDEMPOTENCY_ISSUED_KEY_MAX_AGE"] == seconds


@pytest.mark.concurrent_db
@pytest.mark.mysql_rr
@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_under_an_expired_key_all_start_nothing(
    user: Any, app_clock: Any
) -> None:
    """Each copy's claim is rolled back; the copies waiting behind it are refused in turn."""
    client = client_for(user)
    app_clock(-MINUTES)
    key = issued(client)
    app_clock(timedelta(0))
    copies = 8

    def one(_: int) -> Any:
        return client.post(TRANSFERS, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=MAX_AGE):
        responses = race(copies, one)
    assert [r.status_code for r in responses] == [400] * copies
    assert {r.json()["type"].rsplit("#", 1)[1] for r in responses} == {"issued-key-expired"}
    assert Transfer.objects.count() == 0
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_a_form_key_is_refused_on_the_api(user: Any, assert_problem: Any, api: Any) -> None:
    # Attack: a key the checkout form rendered (bound to that form's endpoint) on a view that
    # takes only API-issued keys.
    form_key = rendered_key(browser(user))
    response = api.post("/api/transfers/", BODY, format="json", HTTP_IDEMPOTENCY_KEY=form_key)
    assert_problem(response, 400, "invalid-issued-key")
    assert Transfer.objects.count() == 0
