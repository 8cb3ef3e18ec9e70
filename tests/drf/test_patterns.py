"""Ordinary DRF code from real shops, with keys (issue 15; issue 9 items 5 and 8).

The views are in tests/testapp/views_drf.py, one per pattern.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from django.core.checks import registry
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import RequestFactory, override_settings
from django.urls import path
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler

from django_idempotency import checks
from django_idempotency.checks import views as checks_views
from django_idempotency.checks.views import check_hidden_creates
from django_idempotency.drf import IdempotentAPIViewMixin, IdempotentCreateMixin
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import make_policy
from tests.testapp.models import Execution
from tests.testapp.views_drf import NoQuerysetViewSet
from tests.testapp.views_shop import ReadOnlyBasketViewSet

pytestmark = pytest.mark.drf

BASE = "/test/drf"


def labels() -> list[str]:
    return sorted(Execution.objects.values_list("label", flat=True))


@pytest.fixture
def atomic_requests() -> Iterator[None]:
    previous = connection.settings_dict["ATOMIC_REQUESTS"]
    connection.settings_dict["ATOMIC_REQUESTS"] = True
    yield
    connection.settings_dict["ATOMIC_REQUESTS"] = previous


# -- 1. a view that catches its own IntegrityError -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("guarded", [False, True])
def test_a_view_that_catches_its_own_integrity_error_gets_its_answer_stored(
    post, guarded: bool
) -> None:
    existing = Execution.objects.create(label="existing")
    body = {"label": "dup", "duplicate_of": existing.pk, "guarded": guarded}

    first = post(f"{BASE}/catches-integrity-error/", body, key="k")
    again = post(f"{BASE}/catches-integrity-error/", body, key="k")

    assert first.status_code == 406, first.content  # was a 500 (TransactionManagementError)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert IdempotencyRecord.objects.get().response_status == 406


@pytest.mark.django_db(transaction=True)
def test_the_views_writes_end_the_same_with_and_without_a_key(post) -> None:
    """The pattern Django recommends (the risky INSERT in its own atomic block): what the view
    wrote before it stays, with a key as without."""
    existing = Execution.objects.create(label="existing")
    body = {"label": "dup", "duplicate_of": existing.pk, "guarded": True}

    assert post(f"{BASE}/catches-integrity-error/", body).status_code == 406
    without_key = labels()
    Execution.objects.exclude(pk=existing.pk).delete()
    assert post(f"{BASE}/catches-integrity-error/", body, key="k").status_code == 406

    assert labels() == without_key == ["dup-before", "existing"]


@pytest.mark.django_db(transaction=True)
def test_under_atomic_requests_the_writes_end_the_same_too(post, atomic_requests) -> None:
    existing = Execution.objects.create(label="existing")
    body = {"label": "dup", "duplicate_of": existing.pk}

    assert post(f"{BASE}/catches-integrity-error/", body).status_code == 406
    without_key = labels()
    keyed = post(f"{BASE}/catches-integrity-error/", body, key="k")

    assert keyed.status_code == 406
    assert labels() == without_key == ["existing"]
    assert IdempotencyRecord.objects.get().response_status == 406


@pytest.mark.django_db(transaction=True)
def test_a_view_that_broke_the_transaction_loses_only_its_own_writes(post) -> None:
    """Without its own atomic block, PostgreSQL cannot keep the writes before the failed
    statement; the view's savepoint undoes them (as ATOMIC_REQUESTS would), the claim stays."""
    existing = Execution.objects.create(label="existing")
    body = {"label": "dup", "duplicate_of": existing.pk}
    assert post(f"{BASE}/catches-integrity-error/", body, key="k").status_code == 406
    assert labels() == ["existing"]
    assert IdempotencyRecord.objects.count() == 1


# -- 2. the database is never chosen by calling get_queryset() -------------------------------


@pytest.mark.django_db
def test_get_queryset_is_never_called_to_route_the_record(post) -> None:
    NoQuerysetViewSet.get_queryset_calls = 0
    first = post(f"{BASE}/no-queryset/", {"label": "a"}, key="k")
    again = post(f"{BASE}/no-queryset/", {"label": "a"}, key="k")

    assert first.status_code == 201, first.content  # was a 500: None has no .model
    assert again["Idempotent-Replayed"] == "true"
    assert NoQuerysetViewSet.get_queryset_calls == 0
    assert "basket created by get_queryset" not in labels()


# -- 3. finalize_response once --------------------------------------------------------------


@pytest.mark.django_db
def test_finalize_response_runs_once_for_a_new_key(post) -> None:
    first = post(f"{BASE}/finalizing/", {"label": "a"}, key="k")
    assert first.status_code == 201
    assert labels().count("finalize_response") == 1  # was 2
    again = post(f"{BASE}/finalizing/", {"label": "a"}, key="k")
    assert again.content == first.content
    assert json.loads(first.content)["live"] == Execution.objects.get(label="finalize_response").pk


@pytest.mark.django_db
def test_vary_is_the_same_with_and_without_a_key(post) -> None:
    plain = post(f"{BASE}/finalizing/", {"label": "a"})
    keyed = post(f"{BASE}/finalizing/", {"label": "b"}, key="k")
    replay = post(f"{BASE}/finalizing/", {"label": "b"}, key="k")
    assert plain["Vary"] == keyed["Vary"] == replay["Vary"] == "Accept, Cookie"


# -- 4. where the create() sits ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_create_wrapping_the_mixins_is_refused_with_a_key(post, assert_problem) -> None:
    """Its 402 would be produced outside the stored transaction, released, and the payment
    run again on retry: keys are refused instead of half-honoured."""
    refused = post(f"{BASE}/wrapped-create/", {"decline": True}, key="k")
    assert_problem(refused, 400, "idempotency-key-not-supported")
    assert labels() == []
    assert post(f"{BASE}/wrapped-create/", {"decline": True}).status_code == 402


@pytest.mark.django_db
def test_a_decorated_create_stores_its_own_402(post) -> None:
    declined = post(f"{BASE}/decorated-create/", {"decline": True}, key="k")
    again = post(f"{BASE}/decorated-create/", {"decline": True}, key="k")
    assert declined.status_code == 402
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == declined.content
    assert labels() == ["charge"]  # charged once


def test_a_create_hiding_the_mixins_is_a_check_error() -> None:
    class Hiding(IdempotentCreateMixin, viewsets.GenericViewSet):  # type: ignore[type-arg]
        def create(self, request: Request) -> Response:
            return Response()

    # Judged where the URLconf routes it (tests/operations/test_checks.py: the walk over a whole
    # URLconf).
    urlconf = ModuleType("hiding_urls")
    urlconf.urlpatterns = [path("hiding/", Hiding.as_view({"post": "create"}))]
    with override_settings(ROOT_URLCONF=urlconf):
        errors = checks_views.check_hidden_creates()
    assert [(m.id, m.obj) for m in errors] == [("django_idempotency.E007", Hiding)]


# -- 6. refusals through the project's own exception handler -------------------------------


def envelope_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """A project's own error format: every error wrapped as ``{"error": ...}``."""
    response = exception_handler(exc, context)
    if response is not None:
        response.data = {"error": response.data, "code": getattr(exc, "default_code", None)}
    return response


@pytest.mark.django_db
def test_refusals_are_rendered_by_the_projects_exception_handler(post, settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "tests.drf.test_patterns.envelope_handler",
    }
    missing = post("/test/probe/", {})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {"detail": "This endpoint requires an Idempotency-Key header."},
        "code": "missing-idempotency-key",
    }
    post("/test/probe/", {"label": "a"}, key="k")
    mismatch = post("/test/probe/", {"label": "b"}, key="k")
    assert mismatch.status_code == 422
    assert mismatch.json()["code"] == "idempotency-key-mismatch"
    assert mismatch["Content-Type"] == "application/json"


# -- 7. the release list per view and per action ------------------------------------------------


@pytest.mark.django_db
def test_a_view_can_release_its_own_validation_status(post) -> None:
    assert post(f"{BASE}/releasing-406/", {}, key="k").status_code == 406
    corrected = post(f"{BASE}/releasing-406/", {"label": "a"}, key="k")
    assert corrected.status_code == 201  # was 422: the 406 had been stored
    assert labels() == ["a"]


@pytest.mark.django_db
def test_without_the_attribute_the_406_is_stored(post) -> None:
    assert post(f"{BASE}/storing-406/", {}, key="k").status_code == 406
    assert post(f"{BASE}/storing-406/", {"label": "a"}, key="k").status_code == 422


@pytest.mark.django_db
def test_a_decorated_action_has_its_own_release_list(post) -> None:
    execution = Execution.objects.create(label="x")
    url = f"{BASE}/unwrapped-routes/{execution.pk}/settle/"
    assert post(url, {"fail": True}, key="k").status_code == 406
    settled = post(url, {}, key="k")
    again = post(url, {}, key="k")
    assert settled.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert labels() == [f"settled {execution.pk}", "x"]
    assert IdempotencyRecord.objects.get().scope.startswith("settle|")


# -- 8. W001 only for deployment --------------------------------------------------------------


def test_the_sqlite_warning_is_a_deployment_check() -> None:
    assert checks.check_sqlite_in_production not in registry.registry.get_checks()
    assert checks.check_sqlite_in_production in registry.registry.get_checks(
        include_deployment_checks=True
    )


# -- issue 9 item 8: keys the layer would not honour are refused ---------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("put", ""), ("patch", ""), ("delete", ""), ("post", "archive/")],
)
def test_a_key_on_an_unwrapped_unsafe_route_is_refused(
    api, assert_problem, method: str, suffix: str
) -> None:
    execution = Execution.objects.create(label="x")
    url = f"{BASE}/unwrapped-routes/{execution.pk}/{suffix}"
    send = getattr(api, method)
    body = {"label": "y"}
    refused = send(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    document = assert_problem(refused, 400, "idempotency-key-not-supported")
    assert method.upper() in document["detail"]
    assert labels() == ["x"]
    assert send(url, body, format="json").status_code < 300  # without a key: as usual


@pytest.mark.django_db
def test_a_view_can_opt_out_of_the_refusal(api) -> None:
    execution = Execution.objects.create(label="x")
    url = f"{BASE}/opted-out-routes/{execution.pk}/archive/"
    assert api.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 200


@pytest.mark.django_db
def test_a_create_shadowing_the_mixins_refuses_keys(post, assert_problem) -> None:
    assert_problem(post(f"{BASE}/shadowing/", {}, key="k"), 400, "idempotency-key-not-supported")
    assert labels() == []  # was: a second order on every retry, silently
    assert post(f"{BASE}/shadowing/", {}).status_code == 201


@pytest.mark.django_db
def test_an_apiview_method_can_be_decorated(post) -> None:
    first = post(f"{BASE}/plain/", {"label": "a"}, key="k")
    again = post(f"{BASE}/plain/", {"label": "a"}, key="k")
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert labels() == ["a"]
    assert IdempotencyRecord.objects.get().scope.startswith("plain|")


@pytest.mark.django_db
def test_the_decorator_without_the_mixin_is_a_configuration_error(post) -> None:
    with pytest.raises(ImproperlyConfigured, match="IdempotentAPIViewMixin"):
        post(f"{BASE}/without-mixin/", {}, key="k")


# -- issue 9 item 5: no CSRF secret is ever stored ------------------------------------------------


@pytest.mark.django_db
def test_a_keyed_browser_request_stores_no_csrf_token(user) -> None:
    from rest_framework.test import APIClient

    browser = APIClient()
    browser.force_login(user)
    browser.get("/admin/login/")  # the CSRF cookie, as a browser would hold it
    secret = browser.cookies["csrftoken"].value
    plain = browser.post(
        f"{BASE}/browsable/", {"label": "a"}, format="json", HTTP_ACCEPT="text/html"
    )
    assert plain["Content-Type"].startswith("text/html")  # unkeyed: the browsable API as before
    keyed = browser.post(
        f"{BASE}/browsable/",
        {"label": "b"},
        format="json",
        HTTP_ACCEPT="text/html",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert keyed.status_code == 201
    assert keyed["Content-Type"] == "application/json"
    stored = bytes(IdempotencyRecord.objects.get().response_body)
    assert b"csrfmiddlewaretoken" not in stored
    assert secret.encode() not in stored
    assert json.loads(stored)["label"] == "b"


# -- generic views and decorated update / destroy ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", ["generic-create", "generic-list-create"])
def test_generic_views_work_with_the_mixin(post, route: str) -> None:
    first = post(f"{BASE}/{route}/", {"label": "a"}, key="k")
    again = post(f"{BASE}/{route}/", {"label": "a"}, key="k")
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert labels() == ["a", "a-before"]


@pytest.mark.django_db
def test_a_generic_views_own_post_around_drfs_runs_once_per_key(post) -> None:
    """``post()`` of its own that calls ``super().post()``: the whole handler runs once, under
    the options of the mixin's ``create()``, instead of every key being refused."""
    first = post("/test/shop/own-post/", {"label": "a"}, key="k")
    again = post("/test/shop/own-post/", {"label": "a"}, key="k")
    assert first.status_code == 201, first.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert labels() == ["a", "a-before", "own post"]


@pytest.mark.django_db
def test_a_generic_views_own_post_still_requires_the_key(post, assert_problem) -> None:
    assert_problem(post("/test/shop/own-post/", {"label": "a"}), 400, "missing-idempotency-key")
    assert labels() == []  # refused before the view's own post() ran


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "k"], ids=["unkeyed", "keyed"])
def test_the_mixin_on_a_read_only_viewset_offers_no_post(api, key: str | None) -> None:
    """Without a ``create()`` behind the mixin there is none at all, as without the mixin."""
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    response = api.post("/test/shop/read-only-basket/", {}, format="json", **headers)
    assert response.status_code == 405, response.content
    assert "POST" not in api.options("/test/shop/read-only-basket/")["Allow"]
    assert not hasattr(ReadOnlyBasketViewSet, "create")
    assert not [m for m in check_hidden_creates() if m.obj is ReadOnlyBasketViewSet]
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_decorated_update_runs_once_per_key(api, method: str) -> None:
    execution = Execution.objects.create(label="x")
    url = f"{BASE}/decorated-updates/{execution.pk}/"
    send = getattr(api, method)
    first = send(url, {"label": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = send(url, {"label": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = send(url, {"label": "z"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert labels().count("update ran") == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db
def test_a_decorated_destroy_replays_its_204(api) -> None:
    execution = Execution.objects.create(label="x")
    url = f"{BASE}/decorated-updates/{execution.pk}/"
    first = api.delete(url, HTTP_IDEMPOTENCY_KEY="k")
    again = api.delete(url, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == again.status_code == 204
    assert again["Idempotent-Replayed"] == "true"  # not the 404 a second delete would give
    assert api.delete(url).status_code == 404  # without a key: as usual


# -- one policy, one vocabulary: the DRF door speaks the plain door's ----------------------


@pytest.mark.django_db
def test_get_idempotency_key_answers_the_key_on_every_door(user: Any) -> None:
    """One hook, one type: the key as a string (the plain door answered a tuple before)."""
    request = RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY='"abc"')
    request.user = user
    drf_request = Request(request)
    drf_request.user = user

    assert make_policy({}).get_idempotency_key(request) == "abc"
    assert IdempotentAPIViewMixin().get_idempotency_key(drf_request) == "abc"
    assert make_policy({}).get_idempotency_ttl() == IdempotentAPIViewMixin().get_idempotency_ttl()


def test_the_drf_mixins_old_name_still_imports_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="use IdempotentAPIViewMixin"):
        from django_idempotency.drf import IdempotentViewMixin
    assert IdempotentViewMixin is IdempotentAPIViewMixin
