"""The django-ninja door: the example's ``/ninja/orders/`` (sync) and ``/ninja/async/orders/``
(``async def``), a test router made idempotent as a whole (references, release, store), scopes by
route, an operation decorated twice and guests by their session."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from ninja import NinjaAPI, Router
from ninja.decorators import decorate_view

from django_idempotency.models import IdempotencyRecord
from django_idempotency.ninja import idempotent, idempotent_router
from example_project.shop.models import Order
from tests.conftest import race
from tests.testapp.models import Execution

DOORS = ["/ninja/orders/", "/ninja/async/orders/"]
PROBES = ["/test/doors/ninja/probe/", "/test/doors/ninja/async-probe/"]
ORDER = {"item": "book", "quantity": 2}


def token_of(user: Any) -> str:
    """The user's DRF token: the example's ninja API takes it as a Bearer token (so the tests
    that log in with it are marked ``drf``; the rest of this module runs without DRF)."""
    from rest_framework.authtoken.models import Token

    return str(Token.objects.get_or_create(user=user)[0].key)


def bearer(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")


def send(client: Client, path: str, body: Any, key: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def ninja(user: Any) -> Client:
    return bearer(user)


@pytest.mark.drf
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
class TestExampleOperations:
    def test_new_order_like_the_drf_door(self, ninja: Any, user: Any, path: str) -> None:
        response = send(ninja, path, ORDER, key="k")
        assert response.status_code == 201, response.content
        order = Order.objects.get()
        assert response["Location"] == f"/api/orders/{order.pk}/"
        drf = Client(HTTP_AUTHORIZATION=f"Token {token_of(user)}")
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


@pytest.mark.drf
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


@pytest.mark.drf
@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", DOORS)
def test_concurrent_copies_run_once(user: Any, path: str) -> None:
    token = token_of(user)
    copies = 8
    clients = [Client(HTTP_AUTHORIZATION=f"Bearer {token}") for _ in range(copies)]
    responses = race(copies, lambda index: send(clients[index], path, ORDER, key="storm"))
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Order.objects.count() == 1


PAYMENTS = "/test/doors/ninja/payments/"
REFUNDS = "/test/doors/ninja/refunds/"


@pytest.mark.drf
@pytest.mark.django_db(transaction=True)
class TestScopeIsTheRoute:
    """Two routers each with ``def create`` (ninja names both URLs ``create``) are two routes, and
    so are two methods on one path: each its own scope."""

    def test_a_refund_after_the_payment_of_the_same_order(self, ninja: Any) -> None:
        paid = send(ninja, PAYMENTS, {"order": 7}, key="pay-7")
        refunded = send(ninja, REFUNDS, {"order": 7}, key="refund-7")
        assert (paid.status_code, refunded.status_code) == (201, 201), refunded.content
        assert refunded.json()["label"] == "refund 7"
        # Each route still holds its reference: another key refunding order 7 gets that refund.
        again = send(ninja, REFUNDS, {"order": 7}, key="refund-7-again")
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == refunded.content
        assert sorted(Execution.objects.values_list("label", flat=True)) == [
            "payment 7",
            "refund 7",
        ]

    def test_one_key_on_both_routes_is_two_operations(self, ninja: Any) -> None:
        paid = send(ninja, PAYMENTS, {"order": 8}, key="k")
        refunded = send(ninja, REFUNDS, {"order": 8}, key="k")
        assert (paid.status_code, refunded.status_code) == (201, 201), refunded.content
        assert "Idempotent-Replayed" not in refunded
        assert send(ninja, REFUNDS, {"order": 8}, key="k")["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 2

    def test_two_methods_on_one_path(self, ninja: Any) -> None:
        created = send(ninja, PAYMENTS, {"order": 9}, key="create-9")
        amended = ninja.patch(
            PAYMENTS, json.dumps({"order": 9}), "application/json", HTTP_IDEMPOTENCY_KEY="amend-9"
        )
        assert (created.status_code, amended.status_code) == (201, 201), amended.content
        assert amended.json()["label"] == "payment amended 9"

    def test_the_scope_names_method_and_pattern(self, ninja: Any, user: Any) -> None:
        send(ninja, PAYMENTS, {"order": 1}, key="k")
        body = json.dumps({"order": 1})
        ninja.patch(PAYMENTS, body, "application/json", HTTP_IDEMPOTENCY_KEY="k")
        assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == [
            f"PATCH test/doors/ninja/payments/|auth.user:{user.pk}",
            f"test/doors/ninja/payments/|auth.user:{user.pk}",
        ]


@pytest.mark.drf
@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_payment_and_refund_race_each_runs_once(user: Any) -> None:
    """Copies of a payment and of a refund of one order under one key, all at once: one of
    each, every copy answered with its own route's response."""
    token = token_of(user)
    copies = 8
    clients = [Client(HTTP_AUTHORIZATION=f"Bearer {token}") for _ in range(copies)]
    paths = [PAYMENTS if index % 2 else REFUNDS for index in range(copies)]
    responses = race(copies, lambda i: send(clients[i], paths[i], {"order": 5}, key="storm"))
    assert [r.status_code for r in responses] == [201] * copies
    for path in (PAYMENTS, REFUNDS):
        answers = {r.content for r, p in zip(responses, paths, strict=True) if p == path}
        assert len(answers) == 1
    assert sorted(Execution.objects.values_list("label", flat=True)) == ["payment 5", "refund 5"]


TWICE = "/test/doors/ninja/twice/"


def test_router_over_a_decorated_operation_loads() -> None:
    """``idempotent_router()`` over an operation that has ``@idempotent()`` loads its URLs."""
    router = Router()

    @router.post("/")
    @idempotent()
    def create(request: Any) -> Any:
        return {}

    idempotent_router(router)
    api = NinjaAPI(urls_namespace=f"twice-{uuid.uuid4().hex}")
    api.add_router("/", router)
    assert [pattern.name for pattern in api.urls[0]][-2:] == ["create", "api-root"]


def test_router_over_an_opaque_view_decorator_is_a_clear_startup_error() -> None:
    """A view decorator without ``functools.wraps`` hides the operation: say so at URL loading."""
    router = Router()

    def opaque(run: Any) -> Any:
        return lambda request, **kw: run(request, **kw)

    @router.post("/")
    @decorate_view(opaque)
    def create(request: Any) -> Any:
        return {}

    idempotent_router(router)
    api = NinjaAPI(urls_namespace=f"opaque-{uuid.uuid4().hex}")
    api.add_router("/", router)
    with pytest.raises(ImproperlyConfigured, match=r"functools\.wraps"):
        api.urls  # noqa: B018


@pytest.mark.drf
@pytest.mark.django_db(transaction=True)
class TestDecoratedTwice:
    """The example of that: one claim per request, the operation's own options, the router's
    for the rest (its TTL)."""

    def test_runs_once_and_replays(self, ninja: Any) -> None:
        first = send(ninja, TWICE, {"label": "a"}, key="k")
        second = send(ninja, TWICE, {"label": "a"}, key="k")
        assert first.status_code == 201, first.content
        assert second["Idempotent-Replayed"] == "true"
        assert second.content == first.content
        assert Execution.objects.count() == 1

    def test_options_of_both(self, ninja: Any) -> None:
        send(ninja, TWICE, {"label": "a", "ref": "r1"}, key="k")
        record = IdempotencyRecord.objects.get()
        assert record.reference == "ref:r1"  # the operation's own option
        lifetime = record.expires_at - record.created_at  # the router's TTL, not the default
        assert timedelta(seconds=60) <= lifetime < timedelta(minutes=10), lifetime


GUESTS = "/test/doors/ninja/guests/"


def guest() -> Client:
    visitor = Client()
    visitor.get("/test/doors/session/")  # a page with a key field starts a stored session
    return visitor


@pytest.mark.django_db(transaction=True)
class TestSessionPrincipal:
    """``principal="session"``: a guest's keys are bound to its session, as on the plain doors."""

    def test_a_guest_by_its_session(self) -> None:
        visitor = guest()
        first = send(visitor, GUESTS, {"label": "g"}, key="k")
        second = send(visitor, GUESTS, {"label": "g"}, key="k")
        assert first.status_code == 201, first.content
        assert second["Idempotent-Replayed"] == "true"
        assert second.content == first.content
        assert IdempotencyRecord.objects.get().scope.startswith(f"{GUESTS[1:]}|session:")

    def test_two_guests_are_two_scopes(self) -> None:
        send(guest(), GUESTS, {"label": "g"}, key="k")
        theirs = send(guest(), GUESTS, {"label": "g"}, key="k")
        assert theirs.status_code == 201
        assert "Idempotent-Replayed" not in theirs
        assert Execution.objects.count() == 2

    def test_a_signed_in_user_is_the_user(self, user: Any) -> None:
        client = Client()
        client.force_login(user)
        send(client, GUESTS, {"label": "u"}, key="k")
        assert IdempotencyRecord.objects.get().scope.endswith(f"|auth.user:{user.pk}")

    def test_a_guests_first_keyed_request_starts_its_session(self) -> None:
        client = Client()
        first = send(client, GUESTS, {"label": "g"}, key="k")
        assert first.status_code == 201
        assert settings.SESSION_COOKIE_NAME in first.cookies
        again = send(client, GUESTS, {"label": "g"}, key="k")
        assert again["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_a_dead_session_cookie_is_refused(self, assert_problem: Any) -> None:
        client = Client()
        client.cookies[settings.SESSION_COOKIE_NAME] = "no-such-session"
        response = send(client, GUESTS, {"label": "g"}, key="k")
        assert_problem(response, 403, "idempotency-key-requires-authentication")
        assert Execution.objects.count() == 0

    def test_an_unknown_principal_is_refused_at_import(self) -> None:
        with pytest.raises(ValueError, match="sesion"):
            idempotent(principal="sesion")


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_a_guests_copies_run_once() -> None:
    visitor = guest()
    copies = 6
    clients = [Client() for _ in range(copies)]
    for client in clients:
        client.cookies = visitor.cookies
    responses = race(copies, lambda i: send(clients[i], GUESTS, {"label": "g"}, key="storm"))
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Execution.objects.count() == 1


# -- bodies, tokens and references a client shapes to break the door ---------------------------


DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.drf  # example project's ninja API: DRF token auth
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
@pytest.mark.parametrize(
    "body",
    [DEEP_JSON, '{"item": "a\\u0000", "quantity": 1}', '{"item": "\\ud800", "quantity": 1}'],
    ids=["deep", "nul", "surrogate"],
)
def test_ninja_hostile_bodies_are_422_not_500(user: Any, path: str, body: str) -> None:
    # Attack: the example's ninja schema let a NUL or a lone surrogate reach PostgreSQL (500).
    client = bearer(user)
    client.raise_request_exception = False
    response = client.post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert 400 <= response.status_code < 500, response.content[:300]
    assert Order.objects.count() == 0


@pytest.mark.drf  # example project's ninja API: DRF token auth
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/ninja/orders/", "/ninja/async/orders/"])
def test_ninja_bad_token_never_reaches_the_key(user: Any, path: str) -> None:
    body = json.dumps({"item": "a", "quantity": 1})
    assert (
        bearer(user).post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k").status_code
        == 201
    )
    stranger = Client(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = stranger.post(path, body, "application/json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 401
    assert "Idempotent-Replayed" not in response


@pytest.mark.drf  # example project's ninja API: DRF token auth
@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ['"07"', "7.0", '" 7"'])
def test_ninja_reference_spelled_otherwise_is_the_same_order(
    user: Any, assert_problem: Any, spelling: str
) -> None:
    # Attack: the operation's schema reads "07", 7.0 and " 7" as order 7; the reference must
    # too, or a second key pays order 7 again.
    client = bearer(user)
    path = "/test/doors/ninja/pay/"
    first = client.post(path, '{"order": 7}', "application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.content
    second = client.post(
        path, f'{{"order": {spelling}}}', "application/json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert_problem(second, 409, "idempotency-reference-conflict")
    assert Execution.objects.count() == 1
