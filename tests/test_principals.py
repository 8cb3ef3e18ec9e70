"""Principals: stateless JWT users (issue 9.6) and opt-in guest sessions (issue 15.5)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.tokens import AccessToken

from django_idempotency.models import IdempotencyRecord
from django_idempotency.principals import user_principal
from tests.factories import UserFactory
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db


def jwt_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def session_client(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def keyed(client: APIClient, path: str, key: str, label: str = "a") -> Any:
    return client.post(path, {"label": label}, format="json", HTTP_IDEMPOTENCY_KEY=key)


# -- stateless users -----------------------------------------------------------------------


def test_a_token_user_is_labelled_with_the_user_model(user) -> None:
    token_user = TokenUser(AccessToken.for_user(user))
    assert getattr(token_user, "_meta", None) is None  # unknown attributes are token claims
    assert user_principal(token_user) == user_principal(user) == f"auth.user:{user.pk}"


@pytest.mark.parametrize("path", ["/test/input/stateless-jwt-probe/", "/test/input/jwt-probe/"])
def test_a_jwt_user_gets_replays_like_any_user(user, path: str) -> None:
    client = jwt_client(user)
    first = keyed(client, path, "k")
    again = keyed(client, path, "k")
    assert first.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.get().scope.endswith(f"|auth.user:{user.pk}")


def test_a_jwt_user_and_a_session_user_of_one_account_share_a_scope(user) -> None:
    path = "/test/input/stateless-jwt-probe/"
    first = keyed(jwt_client(user), path, "k")
    again = keyed(session_client(user), path, "k")
    assert first.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1


def test_another_accounts_jwt_is_another_scope(user, other_user) -> None:
    path = "/test/input/stateless-jwt-probe/"
    keyed(jwt_client(user), path, "k")
    theirs = keyed(jwt_client(other_user), path, "k")
    assert theirs.status_code == 201
    assert not theirs.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2


# -- guest sessions ------------------------------------------------------------------------

GUEST = "/test/input/guest-probe/"


def guest() -> APIClient:
    client = APIClient()
    assert client.get("/test/input/start-session/").status_code == 200
    return client


def test_a_guest_key_replays_within_its_session() -> None:
    client = guest()
    first = keyed(client, GUEST, "checkout-1")
    again = keyed(client, GUEST, "checkout-1")
    assert first.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1


def test_two_guests_never_share_a_scope() -> None:
    one, other = guest(), guest()
    keyed(one, GUEST, "checkout-1", label="one")
    theirs = keyed(other, GUEST, "checkout-1", label="other")
    assert theirs.status_code == 201
    assert not theirs.has_header("Idempotent-Replayed")
    assert theirs.json()["label"] == "other"
    assert Execution.objects.count() == 2
    assert len(set(IdempotencyRecord.objects.values_list("scope", flat=True))) == 2


def test_the_session_key_itself_is_never_stored() -> None:
    client = guest()
    keyed(client, GUEST, "checkout-1")
    session_key = client.cookies["sessionid"].value
    record = IdempotencyRecord.objects.get()
    assert session_key not in record.scope
    assert record.scope.startswith("guest-probe-list|session:")


def test_a_guest_without_a_session_is_refused(assert_problem) -> None:
    refused = keyed(APIClient(), GUEST, "checkout-1")
    document = assert_problem(refused, 403, "idempotency-key-requires-authentication")
    assert "session" in document["detail"]
    assert Execution.objects.count() == 0


def test_a_forged_or_expired_session_cookie_is_no_principal(assert_problem) -> None:
    for cookie in ("a" * 32, "forged-session-key-of-anyone"):
        client = APIClient()
        client.cookies["sessionid"] = cookie
        assert_problem(keyed(client, GUEST, "checkout-1"), 403)
    expired = guest()
    Session.objects.all().delete()
    assert_problem(keyed(expired, GUEST, "checkout-1"), 403)
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_lost_cookie_is_a_new_operation() -> None:
    """The documented limit: the key lives in the session; a new session is a new guest."""
    client = guest()
    keyed(client, GUEST, "checkout-1")
    client.get("/test/input/cycle-session/")  # e.g. a login, or a new cookie
    again = keyed(client, GUEST, "checkout-1")
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2


def test_a_logged_in_user_keeps_the_user_scope_on_a_guest_view(user) -> None:
    first = keyed(session_client(user), GUEST, "k")
    again = keyed(session_client(user), GUEST, "k")  # another session, same account
    assert again["Idempotent-Replayed"] == "true"
    assert first.status_code == 201
    assert IdempotencyRecord.objects.get().scope == f"guest-probe-list|auth.user:{user.pk}"


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies")
def test_signed_cookie_sessions_are_refused(assert_problem) -> None:
    """Their key is the session's data, which changes with every write: no stable scope."""
    assert_problem(keyed(guest(), GUEST, "checkout-1"), 403)
    assert Execution.objects.count() == 0


def test_views_without_the_opt_in_still_refuse_guests(anon, assert_problem) -> None:
    anon.get("/test/input/start-session/")
    response = anon.post(
        "/test/anon-probe/", {"label": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 403, "idempotency-key-requires-authentication")


def test_users_need_only_a_pk() -> None:
    class Stateless:
        is_authenticated = True
        id = 7

    assert user_principal(Stateless()) == "auth.user:7"
    assert user_principal(UserFactory.build(pk=None)) is None
