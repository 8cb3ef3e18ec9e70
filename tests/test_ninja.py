"""The django-ninja door: the example's ``/ninja/orders/`` (sync) and ``/ninja/async/orders/``
(``async def``), and a test router made idempotent as a whole (references, release, store)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order
from tests.conftest import race
from tests.factories import TokenFactory
from tests.testapp.models import Execution

DOORS = ["/ninja/orders/", "/ninja/async/orders/"]
PROBES = ["/test/doors/ninja/probe/", "/test/doors/ninja/async-probe/"]
ORDER = {"item": "book", "quantity": 2}


def bearer(user: Any) -> Client:
    token, _ = Token.objects.get_or_create(user=user)  # the user's DRF token
    return Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")


def send(client: Client, path: str, body: Any, key: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def ninja(user: Any) -> Client:
    return bearer(user)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
class TestExampleOperations:
    def test_new_order_like_the_drf_door(self, ninja: Any, user: Any, path: str) -> None:
        response = send(ninja, path, ORDER, key="k")
        assert response.status_code == 201, response.content
        order = Order.objects.get()
        assert response["Location"] == f"/api/orders/{order.pk}/"
        drf = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=user).key}")
        listed = drf.get("/api/orders/").json()
        assert listed == [response.json()]  # same shape, same bytes per field as DRF's

    def test_replay_is_byte_identical(self, ninja: Any, path: str) -> None:
        first = send(ninja, path, ORDER, key="k")
        second = send(ninja, path, ORDER, key="k")
        assert second.status_code == 201
        assert second.content == first.content
        assert second["Location"] == first["Location"]
        assert second["Idempotent-Replayed"] == "true"
        assert Order.objects.count() == 1

    def test_mismatch(self, ninja: Any, path: str, assert_problem: Any) -> None:
        send(ninja, path, ORDER, key="k")
        assert_problem(send(ninja, path, {**ORDER, "quantity": 3}, key="k"), 422)
        assert Order.objects.count() == 1

    def test_missing_and_invalid_key(self, ninja: Any, path: str, assert_problem: Any) -> None:
        assert_problem(send(ninja, path, ORDER), 400, "missing-idempotency-key")
        assert_problem(send(ninja, path, ORDER, key='"a'), 400, "invalid-idempotency-key")
        assert Order.objects.count() == 0

    def test_ninja_auth_runs_first(self, path: str) -> None:
        response = send(Client(HTTP_AUTHORIZATION="Bearer nope"), path, ORDER, key="k")
        assert response.status_code == 401
        assert IdempotencyRecord.objects.count() == 0

    def test_invalid_body_releases_the_key(self, ninja: Any, path: str) -> None:
        assert send(ninja, path, {**ORDER, "quantity": 0}, key="k").status_code == 422
        assert IdempotencyRecord.objects.count() == 0
        assert send(ninja, path, ORDER, key="k").status_code == 201

    def test_keys_are_per_user(self, ninja: Any, other_user: Any, path: str) -> None:
        send(ninja, path, ORDER, key="k")
        response = send(bearer(other_user), path, ORDER, key="k")
        assert "Idempotent-Replayed" not in response
        assert Order.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PROBES)
class TestRouter:
    def test_release_rolls_back_the_operations_writes(self, ninja: Any, path: str) -> None:
        response = send(ninja, path, {"status": 409}, key="k")
        assert response.status_code == 409
        assert Execution.objects.count() == 0
        assert send(ninja, path, {"status": 201}, key="k").status_code == 201

    def test_settled_refusal_is_stored(self, ninja: Any, path: str) -> None:
        first = send(ninja, path, {"status": 402}, key="k")
        second = send(ninja, path, {"status": 402}, key="k")
        assert second.status_code == 402
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_reference(self, ninja: Any, path: str, assert_problem: Any) -> None:
        first = send(ninja, path, {"ref": "order-7"}, key="k1")
        again = send(ninja, path, {"ref": "order-7"}, key="k2")
        assert again.content == first.content
        assert again["Idempotent-Replayed"] == "true"
        other = send(ninja, path, {"ref": "order-7", "label": "x"}, key="k3")
        assert_problem(other, 409, "idempotency-reference-conflict")
        assert Execution.objects.count() == 1

    def test_safe_methods_pass_through(self, ninja: Any, path: str) -> None:
        assert ninja.get(PROBES[0]).json() == {"count": 0}


@pytest.mark.django_db
def test_openapi_documents_the_header_and_refusals() -> None:
    schema = Client().get("/ninja/openapi.json").json()
    for path in DOORS:
        operation = schema["paths"][path]["post"]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [(p["name"], p["required"]) for p in headers] == [("Idempotency-Key", True)]
        for status in ("400", "409", "422"):
            assert "application/problem+json" in operation["responses"][status]["content"]
        assert "201" in operation["responses"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
def test_concurrent_copies_run_once(user: Any, path: str) -> None:
    token = TokenFactory(user=user).key
    copies = 8
    clients = [Client(HTTP_AUTHORIZATION=f"Bearer {token}") for _ in range(copies)]
    responses = race(copies, lambda index: send(clients[index], path, ORDER, key="storm"))
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Order.objects.count() == 1
