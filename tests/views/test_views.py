"""The plain Django door: ``@idempotent_view`` (sync and async), ``IdempotentViewMixin``,
the session principal and the template tag."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.http import HttpResponse
from django.template import TemplateSyntaxError, engines
from django.test import AsyncClient, Client, RequestFactory

from django_idempotency.core.issued_keys import issue_key
from django_idempotency.core.principals import user_principal
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import idempotent_view
from example_project.shop.models import Payment
from tests.conftest import race
from tests.factories import OrderFactory
from tests.testapp import views_doors
from tests.testapp.models import Execution

KEY_INPUT = re.compile(r'name="idempotency_key" value="([^"]+)"')


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def rendered_key(client: Client, path: str) -> str:
    match = KEY_INPUT.search(client.get(path).content.decode())
    assert match is not None
    return match.group(1)


PLAIN = "/test/doors/plain/"
ASYNC = "/test/doors/async/"


@pytest.mark.django_db
class TestFunctionView:
    def test_new_then_replay_byte_identical(self, user: Any) -> None:
        client = logged_in(user)
        first = post_json(client, PLAIN, {"label": "a"}, key="k1")
        second = post_json(client, PLAIN, {"label": "a"}, key="k1")
        assert first.status_code == second.status_code == 201
        assert second.content == first.content
        assert second["Content-Type"] == first["Content-Type"]
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_mismatch(self, user: Any, assert_problem: Any) -> None:
        client = logged_in(user)
        post_json(client, PLAIN, {"label": "a"}, key="k1")
        assert_problem(post_json(client, PLAIN, {"label": "b"}, key="k1"), 422)
        assert Execution.objects.count() == 1

    def test_missing_and_invalid_key(self, user: Any, assert_problem: Any) -> None:
        client = logged_in(user)
        assert_problem(post_json(client, PLAIN, {}), 400, "missing-idempotency-key")
        assert_problem(post_json(client, PLAIN, {}, key=" x"), 400, "invalid-idempotency-key")
        assert Execution.objects.count() == 0

    def test_anonymous_is_refused_before_anything_runs(self, assert_problem: Any) -> None:
        response = post_json(Client(), PLAIN, {}, key="k")
        assert_problem(response, 403, "idempotency-key-requires-authentication")
        assert Execution.objects.count() == 0

    def test_safe_methods_pass_through(self, user: Any) -> None:
        assert logged_in(user).get(PLAIN).status_code == 200

    def test_keys_are_per_user(self, user: Any, other_user: Any) -> None:
        post_json(logged_in(user), PLAIN, {"label": "a"}, key="k")
        response = post_json(logged_in(other_user), PLAIN, {"label": "a"}, key="k")
        assert "Idempotent-Replayed" not in response
        assert Execution.objects.count() == 2

    def test_release_rolls_back_and_frees_the_key(self, user: Any) -> None:
        client = logged_in(user)
        refused = post_json(client, PLAIN, {"status": 409}, key="k")
        assert refused.status_code == 409
        assert Execution.objects.count() == 0  # the view's write was rolled back
        again = post_json(client, PLAIN, {"status": 201}, key="k")
        assert again.status_code == 201
        assert "Idempotent-Replayed" not in again

    def test_stored_4xx_outcome_is_replayed(self, user: Any) -> None:
        client = logged_in(user)
        first = post_json(client, PLAIN, {"status": 402}, key="k")
        second = post_json(client, PLAIN, {"status": 402}, key="k")
        assert second.status_code == 402
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1
        assert second.content == first.content

    def test_reference_blocks_a_second_key(self, user: Any, assert_problem: Any) -> None:
        client = logged_in(user)
        first = post_json(client, PLAIN, {"ref": "7"}, key="k1")
        copy = post_json(client, PLAIN, {"ref": "7"}, key="k2")
        assert copy.content == first.content
        assert copy["Idempotent-Replayed"] == "true"
        other = post_json(client, PLAIN, {"ref": "7", "label": "x"}, key="k3")
        assert_problem(other, 409, "idempotency-reference-conflict")
        assert Execution.objects.count() == 1

    def test_form_field_keys_must_be_issued(self, user: Any, assert_problem: Any) -> None:
        client = logged_in(user)
        made_up = client.post(PLAIN, {"idempotency_key": "mine"}, HTTP_ACCEPT="application/json")
        assert_problem(made_up, 400, "invalid-issued-key")
        key = rendered_key(client, PLAIN)
        assert client.post(PLAIN, {"idempotency_key": key}).status_code == 201
        replay = client.post(PLAIN, {"idempotency_key": key})
        assert replay["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_unknown_option_is_refused_at_import(self) -> None:
        with pytest.raises(TypeError, match="keysource"):
            idempotent_view(keysource="issued")(lambda request: None)


@pytest.mark.parametrize(
    "already",
    [
        pytest.param(lambda: idempotent_view(_execution_view), id="idempotent_view"),
        pytest.param(
            lambda: login_required(idempotent_view(_execution_view)), id="under-another-decorator"
        ),
        pytest.param(lambda: views_doors.ClassView.as_view(), id="IdempotentViewMixin"),
    ],
)
def test_a_view_made_idempotent_twice_is_refused_when_decorated(already: Any) -> None:
    """The inner claim meets the outer one's row, in flight in the same transaction: every
    request waited the lock timeout and got 409 "send it again", which never passes."""
    with pytest.raises(ImproperlyConfigured, match="already"):
        idempotent_view(already())


def _execution_view(request: Any) -> Any:
    return HttpResponse(status=201)


@pytest.mark.django_db
class TestClassBasedView:
    path = "/test/doors/class/"

    def test_issued_key_from_the_tag_runs_once(self, user: Any) -> None:
        client = logged_in(user)
        key = rendered_key(client, self.path)
        first = client.post(self.path, {"label": "c", "idempotency_key": key})
        second = client.post(self.path, {"label": "c", "idempotency_key": key})
        assert first.status_code == 201
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_issued_key_in_the_header_works_too(self, user: Any) -> None:
        key = issue_key(user_principal(user)).key  # an API-issued key: any endpoint
        response = post_json(logged_in(user), self.path, {"label": "h"}, key=key)
        assert response.status_code == 201

    def test_key_for_another_endpoint_is_refused(self, user: Any, assert_problem: Any) -> None:
        key = issue_key(user_principal(user), "plain").key
        response = post_json(logged_in(user), self.path, {}, key=key)
        assert_problem(response, 400, "invalid-issued-key")
        assert Execution.objects.count() == 0


@pytest.mark.django_db
class TestSessionPrincipal:
    path = "/test/doors/session/"

    def test_anonymous_visitor_by_session(self) -> None:
        visitor = Client()
        key = rendered_key(visitor, self.path)
        first = visitor.post(self.path, {"label": "s", "idempotency_key": key})
        second = visitor.post(self.path, {"label": "s", "idempotency_key": key})
        assert first.status_code == 201
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_another_visitors_key_is_refused(self) -> None:
        key = rendered_key(Client(), self.path)
        stranger = Client()
        stranger.get(self.path)  # has a session of its own
        response = stranger.post(self.path, {"idempotency_key": key})
        assert response.status_code == 400
        assert Execution.objects.count() == 0

    def test_a_guest_who_logs_in_gets_the_replay_of_its_form(
        self, user: Any, other_user: Any
    ) -> None:
        """The form was sent as a guest, the answer lost; the visitor logs in and the browser
        resends it. The key names the guest's session, which the login carried to the user:
        a refusal would tell them to open the form again, and that would run it twice."""
        visitor = Client()
        key = rendered_key(visitor, self.path)
        first = visitor.post(self.path, {"label": "s", "idempotency_key": key})
        assert first.status_code == 201
        assert visitor.login(username=user.username, password="secret")
        again = visitor.post(self.path, {"label": "s", "idempotency_key": key})
        assert again.status_code == 201, again.content
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == first.content
        assert Execution.objects.count() == 1
        # Another account never gets the guest's key.
        stranger = logged_in(other_user)
        assert stranger.post(self.path, {"label": "s", "idempotency_key": key}).status_code == 400

    def test_no_session_no_key(self) -> None:
        # A guest without a stored session has no principal to hold a key: refused, nothing runs.
        key = rendered_key(Client(), self.path)
        assert Client().post(self.path, {"idempotency_key": key}).status_code == 403
        assert Execution.objects.count() == 0


async def logged_in_async(user: Any) -> AsyncClient:
    # AsyncClient.aforce_login() is Django 5.0+; the session cookie works on every version.
    client = AsyncClient()
    client.cookies = (await sync_to_async(logged_in)(user)).cookies
    return client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
class TestAsyncView:
    @pytest.fixture(autouse=True)
    async def _close_executor_connections(self) -> Any:
        yield
        # The thread-sensitive executor's thread opened its own connection; the test
        # database cannot be dropped while it is open.
        await sync_to_async(connections.close_all)()

    async def test_new_replay_and_mismatch(self, user: Any) -> None:
        client = await logged_in_async(user)
        body = json.dumps({"label": "a"})
        key = {"Idempotency-Key": "k"}
        first = await client.post(ASYNC, body, "application/json", headers=key)
        second = await client.post(ASYNC, body, "application/json", headers=key)
        other = await client.post(ASYNC, "{}", "application/json", headers=key)
        assert first.status_code == 201
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert other.status_code == 422
        assert await Execution.objects.acount() == 1

    async def test_released_answer_rolls_back_the_views_async_write(self, user: Any) -> None:
        # The async view's acreate() ran inside the claim's transaction: a 409 undoes it.
        client = await logged_in_async(user)
        body = json.dumps({"status": 409})
        key = {"Idempotency-Key": "k"}
        response = await client.post(ASYNC, body, "application/json", headers=key)
        assert response.status_code == 409
        assert await Execution.objects.acount() == 0

    async def test_async_class_based_view(self, user: Any) -> None:
        client = await logged_in_async(user)
        path = "/test/doors/async-class/"
        body = json.dumps({"status": 201})
        first = await client.post(path, body, "application/json", headers={"Idempotency-Key": "k"})
        second = await client.post(path, body, "application/json", headers={"Idempotency-Key": "k"})
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        released = await client.post(
            path, json.dumps({"status": 409}), "application/json", headers={"Idempotency-Key": "k2"}
        )
        assert released.status_code == 409
        assert await Execution.objects.acount() == 1


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", [PLAIN, ASYNC])
def test_concurrent_copies_run_once(user: Any, path: str) -> None:
    copies = 8
    clients = [logged_in(user) for _ in range(copies)]

    def one(index: int) -> Any:
        return post_json(clients[index], path, {"label": "storm", "sleep": 0.3}, key="storm")

    responses = race(copies, one)
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Execution.objects.count() == 1


@pytest.mark.django_db
def test_form_view_reference_as_the_form_saves_it(user: Any, assert_problem: Any) -> None:
    order = OrderFactory(owner=user)
    client = logged_in(user)
    path = "/test/doors/payment/"
    first = client.post(path, {"order": str(order.pk), "amount": "5"}, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.content
    # "01" names the same order to the form: another key cannot pay it again.
    second = client.post(
        path,
        {"order": f"0{order.pk}", "amount": "5"},
        HTTP_IDEMPOTENCY_KEY="k2",
        HTTP_ACCEPT="application/json",
    )
    assert_problem(second, 409, "idempotency-reference-conflict")
    assert Payment.objects.count() == 1


@pytest.mark.django_db
class TestScopeIsTheRoute:
    """The endpoint is the route (method and URL), not the view: one class behind two unnamed
    URLs, or one view answering two methods, is two operations."""

    def test_one_view_class_on_two_unnamed_routes(self, user: Any) -> None:
        client = logged_in(user)
        paid = post_json(client, "/test/doors/pay/", {"order": 7}, key="pay-7")
        refunded = post_json(client, "/test/doors/refund/", {"order": 7}, key="refund-7")
        assert (paid.status_code, refunded.status_code) == (201, 201), refunded.content
        same_key = post_json(client, "/test/doors/refund/", {"order": 8}, key="pay-7")
        assert same_key.status_code == 201, same_key.content
        assert sorted(Execution.objects.values_list("label", flat=True)) == [
            "payment 7",
            "refund 7",
            "refund 8",
        ]
        assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True))[:2] == [
            f"test/doors/pay/|auth.user:{user.pk}",
            f"test/doors/refund/|auth.user:{user.pk}",
        ]

    def test_a_form_key_is_bound_to_its_unnamed_route(self, user: Any) -> None:
        client = logged_in(user)
        key = rendered_key(client, "/test/doors/form-a/")  # the tag's endpoint: this route
        elsewhere = client.post("/test/doors/form-b/", {"idempotency_key": key})
        assert elsewhere.status_code == 400  # same view class, another route
        assert client.post("/test/doors/form-a/", {"idempotency_key": key}).status_code == 201
        assert Execution.objects.count() == 1

    def test_two_methods_on_one_url_name(self, user: Any) -> None:
        client = logged_in(user)
        created = post_json(client, PLAIN, {"ref": "7"}, key="create")
        deleted = client.delete(
            PLAIN, json.dumps({"ref": "7"}), "application/json", HTTP_IDEMPOTENCY_KEY="delete"
        )
        assert (created.status_code, deleted.status_code) == (201, 201), deleted.content
        assert sorted(IdempotencyRecord.objects.values_list("scope", flat=True)) == [
            f"DELETE plain|auth.user:{user.pk}",
            f"plain|auth.user:{user.pk}",
        ]


@pytest.mark.django_db
def test_anonymous_without_or_with_a_bad_key_is_403_first(assert_problem: Any) -> None:
    code = "idempotency-key-requires-authentication"
    assert_problem(post_json(Client(), PLAIN, {}), 403, code)
    assert_problem(post_json(Client(), PLAIN, {}, key=" bad"), 403, code)


@pytest.mark.django_db
class TestTemplateResponses:
    """A view may answer with an unrendered ``TemplateResponse``: it is stored as rendered."""

    def test_function_view_template_response_is_stored_and_replayed(self, user: Any) -> None:
        client = logged_in(user)
        path = "/test/doors/template/"
        first = client.post(path, {"label": "t"}, HTTP_IDEMPOTENCY_KEY="k")
        second = client.post(path, {"label": "t"}, HTTP_IDEMPOTENCY_KEY="k")
        assert first.status_code == second.status_code == 201
        assert first.content == second.content
        assert b"Saved t as #" in first.content
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1

    def test_form_view_template_response_is_stored_and_replayed(self, user: Any) -> None:
        client = logged_in(user)
        path = "/test/doors/form-optional-key/"
        first = client.post(path, {"label": "f"}, HTTP_IDEMPOTENCY_KEY="k")
        second = client.post(path, {"label": "f"}, HTTP_IDEMPOTENCY_KEY="k")
        assert first.status_code == second.status_code == 200
        assert first.content == second.content
        assert second["Idempotent-Replayed"] == "true"
        assert Execution.objects.count() == 1


@pytest.mark.django_db
class TestInvalidForms:
    """An invalid form is a 400 only under a key (releasing it); without one, as without us."""

    path = "/test/doors/form-optional-key/"
    bare = "/test/doors/form/"  # the same FormView without the package

    def test_without_a_key_the_answer_is_the_plain_views(self, user: Any) -> None:
        client = logged_in(user)
        ours = client.post(self.path, {"label": ""})
        theirs = client.post(self.bare, {"label": ""})
        assert (ours.status_code, ours.content) == (theirs.status_code, theirs.content)
        assert ours.status_code == 200
        assert Execution.objects.count() == 0

    def test_without_a_key_a_valid_form_is_the_plain_views_too(self, user: Any) -> None:
        client = logged_in(user)
        ours = client.post(self.path, {"label": "x"})
        again = client.post(self.path, {"label": "x"})
        assert ours.status_code == again.status_code == 200
        assert "Idempotent-Replayed" not in again  # no key, no protection: it ran twice
        assert Execution.objects.count() == 2

    def test_under_a_key_it_is_a_400_that_releases_the_key(self, user: Any) -> None:
        client = logged_in(user)
        refused = client.post(self.path, {"label": ""}, HTTP_IDEMPOTENCY_KEY="k")
        assert refused.status_code == 400
        fixed = client.post(self.path, {"label": "x"}, HTTP_IDEMPOTENCY_KEY="k")
        assert fixed.status_code == 200
        assert "Idempotent-Replayed" not in fixed
        assert Execution.objects.count() == 1


@pytest.mark.django_db
class TestKeyTemplateTag:
    """The tag starts a session for a guest only where the view scopes guests by session."""

    def test_a_guest_page_view_creates_no_session(self) -> None:
        visitor = Client()
        page = visitor.get(PLAIN)  # the tag without arguments: the default "user" principal
        assert page.status_code == 200
        assert not KEY_INPUT.search(page.content.decode())  # nothing to bind a key to
        assert Session.objects.count() == 0
        assert settings.SESSION_COOKIE_NAME not in page.cookies

    def test_session_principal_starts_a_session_and_binds_the_key(self) -> None:
        visitor = Client()
        key = rendered_key(visitor, "/test/doors/session/")
        assert Session.objects.count() == 1
        response = visitor.post("/test/doors/session/", {"label": "s", "idempotency_key": key})
        assert response.status_code == 201

    def test_a_user_gets_a_key_and_no_guest_session(self, user: Any) -> None:
        client = logged_in(user)
        sessions = Session.objects.count()  # the login's own
        key = rendered_key(client, PLAIN)
        assert client.post(PLAIN, {"idempotency_key": key}).status_code == 201
        assert Session.objects.count() == sessions

    def test_an_unknown_principal_is_a_template_error(self) -> None:
        page = engines["django"].from_string(
            '{% load idempotency %}{% idempotency_key_input principal="tenant" %}'
        )
        with pytest.raises(TemplateSyntaxError, match="tenant"):
            page.render({}, RequestFactory().get("/"))


# -- references and bodies a client shapes to break the door ---------------------------------


DEEP_JSON = "[" * 100_000 + "]" * 100_000


@pytest.mark.django_db
def test_deeply_nested_json_to_a_form_view_with_a_reference_is_no_500(user: Any) -> None:
    # Attack: the reference lookup parses the JSON body; nesting deep enough makes the parser
    # raise RecursionError (not a ValueError), which escaped as a 500.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    response = client.post(
        "/test/doors/payment/", DEEP_JSON, "application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400, response.content[:300]
    assert Payment.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", ['"07"', '"+7"', "7.0"])
def test_function_view_reference_spelled_otherwise_is_the_same_order(
    user: Any, spelling: str
) -> None:
    # Attack on the README's function view (get_object_or_404(Order, pk=request.POST["order"])):
    # "07" finds order 7, so a second key must not pay it again as a new reference.
    client = Client()
    client.force_login(user)
    path = "/test/doors/plain/"
    first = client.post(path, '{"ref": 7}', "application/json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 201, first.content
    second = client.post(
        path, f'{{"ref": {spelling}}}', "application/json", HTTP_IDEMPOTENCY_KEY="k2"
    )
    assert second.status_code == 409, second.content
    assert Execution.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["99999999999999999999", "1\x00", "\ud800", "9" * 5000])
def test_form_view_reference_of_an_impossible_order_is_400(user: Any, order: str) -> None:
    # The reference is cleaned by the form's ModelChoiceField, a database lookup: out-of-range
    # numbers, NUL and lone surrogates must reach it as a refusal, never a database error.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    body = json.dumps({"order": order, "amount": "1.00"})
    response = client.post(
        "/test/doors/payment/", body, "application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 400, response.content[:300]
    assert Payment.objects.count() == 0
