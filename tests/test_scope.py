"""Keys are scoped to the authenticated principal and the endpoint; safe methods ignore them."""

from __future__ import annotations

import base64

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order
from tests.factories import OrderFactory, TokenFactory
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def test_two_users_with_one_key_are_two_operations(post, other_api) -> None:
    mine = post("/test/probe/", {"label": "alice"}, key="k")
    theirs = post("/test/probe/", {"label": "bob"}, key="k", client=other_api)
    assert mine.status_code == theirs.status_code == 201
    assert theirs.json()["label"] == "bob"
    assert not theirs.has_header("Idempotent-Replayed")
    # Under his key, bob's records are the only ones that count: his retry replays his
    # response, and alice's body is a mismatch against his record.
    assert (
        post("/test/probe/", {"label": "bob"}, key="k", client=other_api).content == theirs.content
    )
    assert post("/test/probe/", {"label": "alice"}, key="k", client=other_api).status_code == 422
    assert Execution.objects.count() == 2
    assert IdempotencyRecord.objects.values("scope").distinct().count() == 2


def test_a_user_never_receives_another_users_response(post, other_api) -> None:
    body = {"label": "same"}
    post("/test/probe/", body, key="k")
    theirs = post("/test/probe/", body, key="k", client=other_api)
    assert not theirs.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2


def test_two_endpoints_with_one_key_are_two_operations(post) -> None:
    probe = post("/test/probe/", {"label": "a"}, key="k")
    optional = post("/test/optional-probe/", {"label": "a"}, key="k")
    assert probe.status_code == optional.status_code == 201
    assert not optional.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 2


def test_a_rotated_token_keeps_the_scope(post, user, api) -> None:
    first = post("/test/probe/", {"label": "a"}, key="k")
    Token.objects.filter(user=user).delete()
    rotated = APIClient()
    rotated.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    again = post("/test/probe/", {"label": "a"}, key="k", client=rotated)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    # Another way of authenticating the same user is the same principal as well.
    basic = APIClient()
    credentials = base64.b64encode(f"{user.username}:secret".encode()).decode()
    basic.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert post("/test/probe/", {"label": "a"}, key="k", client=basic)["Idempotent-Replayed"]
    assert Execution.objects.count() == 1


def test_an_anonymous_client_with_a_key_is_refused(anon, assert_problem) -> None:
    response = anon.post(
        "/test/anon-probe/", {"label": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 403, "idempotency-key-requires-authentication")
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_an_anonymous_client_without_a_key_runs_where_the_key_is_optional(anon) -> None:
    assert anon.post("/test/optional-anon-probe/", {}, format="json").status_code == 201
    assert Execution.objects.count() == 1


def test_the_example_api_refuses_anonymous_clients(anon, assert_problem) -> None:
    response = anon.post(
        "/api/orders/", {"item": "x", "quantity": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 401)
    assert Order.objects.count() == 0


@pytest.mark.parametrize("method", ["get", "head", "options"])
def test_safe_methods_ignore_keys(api, user, method: str) -> None:
    call = getattr(api, method)
    for raw in ("k", "k", "bad\tkey", ""):
        response = call("/api/orders/", HTTP_IDEMPOTENCY_KEY=raw)
        assert response.status_code == 200, response.content
        assert not response.has_header("Idempotent-Replayed")
    assert IdempotencyRecord.objects.count() == 0


def test_a_repeated_get_is_answered_afresh(api, user) -> None:
    empty = api.get("/api/orders/", HTTP_IDEMPOTENCY_KEY="k")
    OrderFactory(owner=user, item="book")
    listed = api.get("/api/orders/", HTTP_IDEMPOTENCY_KEY="k")
    assert empty.json() == []
    assert [order["item"] for order in listed.json()] == ["book"]


def test_two_methods_on_one_url_name_are_two_routes(api, user) -> None:
    """``-detail`` serves PUT and DELETE: the update's reference does not refuse the delete."""
    execution = Execution.objects.create(label="x")
    url = f"/test/drf/held-updates/{execution.pk}/"
    updated = api.put(url, {"label": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="update")
    deleted = api.delete(url, HTTP_IDEMPOTENCY_KEY="delete")
    assert (updated.status_code, deleted.status_code) == (200, 204), deleted.content
    assert not Execution.objects.exists()
    assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == [
        f"DELETE drf-held-updates-detail|auth.user:{user.pk}",
        f"PUT drf-held-updates-detail|auth.user:{user.pk}",
    ]


def test_a_post_route_keeps_its_url_name_as_scope(post, user) -> None:
    """POST scopes are what they were (the URL name): records written before still replay."""
    post("/test/probe/", {"label": "a"}, key="k")
    assert IdempotencyRecord.objects.get().scope == f"probe-list|auth.user:{user.pk}"
