"""Which outcomes are stored (they settle the operation) and which release the key."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from django_idempotency.conf import DEFAULT_RELEASE_STATUS_CODES
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import make_policy
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

# The documented default, spelled out so that a change to it fails here.
RELEASED_BY_DEFAULT = [400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429]


def assert_released(post) -> None:
    """Nothing of the failed attempt is left, and a corrected retry under its key runs."""
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0
    retry = post("/test/probe/", {"label": "fixed"}, key="k")
    assert retry.status_code == 201
    assert not retry.has_header("Idempotent-Replayed")
    assert list(Execution.objects.values_list("label", flat=True)) == ["fixed"]
    assert IdempotencyRecord.objects.get().response_status == 201


@pytest.mark.parametrize("status", [200, 201, 202, 204, 402, 410, 418, 451])
def test_settled_outcomes_are_stored_and_replayed(post, status: int) -> None:
    first = post("/test/probe/", {"status": status}, key="k")
    again = post("/test/probe/", {"status": status}, key="k")
    assert first.status_code == again.status_code == status
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.get().response_status == status


def test_a_raised_api_error_outside_the_release_list_is_stored(post) -> None:
    first = post("/test/probe/", {"raise": "teapot"}, key="k")
    again = post("/test/probe/", {"raise": "teapot"}, key="k")
    assert first.status_code == again.status_code == 418
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    # Without ATOMIC_REQUESTS, writes made before a raised APIException stay, as in plain DRF;
    # the answer is stored with them (tests/core/test_atomic_requests.py covers the other case).
    assert Execution.objects.count() == 1
    assert IdempotencyRecord.objects.get().response_status == 418


@pytest.mark.parametrize("status", [*RELEASED_BY_DEFAULT, 500, 502, 503, 599])
def test_release_statuses_roll_back_and_free_the_key(post, status: int) -> None:
    response = post("/test/probe/", {"label": "bad", "status": status}, key="k")
    assert response.status_code == status
    assert_released(post)


def test_validation_error_then_corrected_body_under_the_same_key(post, assert_problem) -> None:
    refused = post("/test/probe/", {"label": "bad", "raise": "validation"}, key="k")
    assert_problem(refused, 400)
    assert_released(post)


def test_raised_exception_rolls_back_and_frees_the_key(post, api) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        post("/test/probe/", {"label": "bad", "raise": "crash"}, key="k")
    api.raise_request_exception = False
    assert post("/test/probe/", {"label": "bad", "raise": "crash"}, key="k").status_code == 500
    assert_released(post)


@override_settings(IDEMPOTENCY_RELEASE_STATUS_CODES=[402])
def test_the_release_list_is_a_setting(post) -> None:
    post("/test/probe/", {"status": 409}, key="stored")
    assert post("/test/probe/", {"status": 409}, key="stored")["Idempotent-Replayed"] == "true"
    assert post("/test/probe/", {"label": "bad", "status": 402}, key="k").status_code == 402
    assert IdempotencyRecord.objects.filter(key="k").count() == 0
    assert Execution.objects.filter(label="bad").count() == 0
    assert post("/test/probe/", {"status": 201}, key="k").status_code == 201
    assert IdempotencyRecord.objects.get(key="k").response_status == 201


@override_settings(IDEMPOTENCY_RELEASE_STATUS_CODES=[])
def test_5xx_is_released_whatever_the_setting(post) -> None:
    assert post("/test/probe/", {"label": "bad", "status": 503}, key="k").status_code == 503
    assert_released(post)


@pytest.mark.django_db(transaction=True)
def test_release_is_a_real_rollback(post) -> None:
    """Outside the test's own transaction: the release undoes committed-looking work too."""
    assert post("/test/probe/", {"label": "bad", "status": 500}, key="k").status_code == 500
    assert_released(post)


EXTRA_406 = "/test/input/extra-406/"


@pytest.mark.parametrize("status", [406, 404, 401, 409])
def test_extra_release_codes_extend_the_default_list(post, status: int) -> None:
    """``idempotency_extra_release_status_codes = {406}`` adds 406 and keeps every default."""
    assert post(EXTRA_406, {"label": "bad", "status": status}, key="k").status_code == status
    assert IdempotencyRecord.objects.count() == 0
    assert Execution.objects.count() == 0
    retry = post(EXTRA_406, {"label": "fixed"}, key="k")
    assert retry.status_code == 201
    assert not retry.has_header("Idempotent-Replayed")


def test_extra_release_codes_store_what_is_not_listed(post) -> None:
    first = post(EXTRA_406, {"status": 402}, key="k")
    assert post(EXTRA_406, {"status": 402}, key="k")["Idempotent-Replayed"] == "true"
    assert first.status_code == 402
    assert Execution.objects.count() == 1


@override_settings(IDEMPOTENCY_RELEASE_STATUS_CODES={*DEFAULT_RELEASE_STATUS_CODES, 406})
def test_the_setting_extends_the_exported_default(post) -> None:
    assert post("/test/probe/", {"label": "bad", "status": 406}, key="k").status_code == 406
    assert post("/test/probe/", {"label": "bad", "status": 404}, key="k").status_code == 404
    assert_released(post)


def test_the_default_list_is_exported() -> None:
    assert sorted(DEFAULT_RELEASE_STATUS_CODES) == RELEASED_BY_DEFAULT


@override_settings(IDEMPOTENCY_RELEASE_STATUS_CODES=[402])
def test_plain_views_take_the_same_release_options() -> None:
    assert make_policy({}).get_idempotency_release_status_codes() == {402}
    extended = make_policy({"extra_release_status_codes": [406]})
    assert extended.get_idempotency_release_status_codes() == {402, 406}
    replaced = make_policy({"release_status_codes": [400], "extra_release_status_codes": [406]})
    assert replaced.get_idempotency_release_status_codes() == {400, 406}


# -- a released answer is the view's own answer, and the view's session survives it ----------


def session_basket(client: APIClient, body: dict[str, Any], key: str | None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post("/test/shop/session-basket/", body, format="json", **headers)


@pytest.mark.parametrize(
    "transaction",
    [
        pytest.param(False, id="in-test-transaction"),
        pytest.param(True, id="committed", marks=pytest.mark.django_db(transaction=True)),
    ],
)
def test_a_released_answer_keeps_the_session_the_view_created(
    api: APIClient, other_api: APIClient, transaction: bool
) -> None:
    """A view creates the client's session, then answers 406 (released): the client gets the
    406 and its session as without a key, not SessionMiddleware's 400 for a vanished row."""
    unkeyed = session_basket(other_api, {}, key=None)
    client = api
    keyed = session_basket(client, {}, key="k")

    assert keyed.status_code == unkeyed.status_code == 406, keyed.content
    assert keyed["Content-Type"] == unkeyed["Content-Type"] == "application/json"
    assert keyed.content == unkeyed.content
    session_key = keyed.cookies["sessionid"].value
    assert SessionStore(session_key).load() == {"basket": "open"}
    # The release undid the view's own writes (the unkeyed request's line stays) and the key.
    assert list(Execution.objects.values_list("label", flat=True)) == ["basket line"]
    assert IdempotencyRecord.objects.count() == 0

    corrected = session_basket(client, {"product": "book"}, key="k")
    assert corrected.status_code == 201, corrected.content
    assert client.cookies["sessionid"].value == session_key  # the same session, kept
    assert Execution.objects.count() == 2


@pytest.mark.parametrize(
    "path", ["/test/doors/session-basket/", "/test/doors/ninja/guests/basket/"]
)
def test_every_door_keeps_the_session_a_released_view_created(path: str) -> None:
    """The plain-Django and ninja doors restore the session a released run created, as the
    DRF door does: the guest gets the view's 406 and its session, not SessionMiddleware's 400."""
    client = Client()
    keyed = client.post(path, {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k")

    assert keyed.status_code == 406, keyed.content
    session_key = keyed.cookies[settings.SESSION_COOKIE_NAME].value
    assert SessionStore(session_key).load()["basket"] == "open"
    assert Execution.objects.count() == 0  # the release undid the view's own write
    assert IdempotencyRecord.objects.count() == 0

    corrected = client.post(
        path, {"product": "book"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert corrected.status_code == 201, corrected.content
    assert client.cookies[settings.SESSION_COOKIE_NAME].value == session_key  # kept


def test_under_atomic_requests_a_released_answer_keeps_the_session_too(
    api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    keyed = session_basket(api, {}, key="k")
    assert keyed.status_code == 406, keyed.content
    assert SessionStore(keyed.cookies["sessionid"].value).load() == {"basket": "open"}
    assert Execution.objects.count() == 0


def test_a_released_answer_keeps_a_session_the_view_cycled(api: APIClient) -> None:
    client = api
    assert session_basket(client, {"product": "book"}, key=None).status_code == 201
    old_key = client.cookies["sessionid"].value
    cycled = client.post(
        "/test/shop/session-basket/?cycle=1", {}, format="json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert cycled.status_code == 406, cycled.content
    new_key = cycled.cookies["sessionid"].value
    assert new_key != old_key
    assert SessionStore(new_key).load() == {"basket": "open"}
    assert not SessionStore().exists(old_key)  # cycle_key() deleted it, as without a key
