"""Every refusal is RFC 9457 problem+json, the layer's own and (via the handler) the API's."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_idempotency import exceptions
from django_idempotency.core.problems import error_response
from tests.factories import OrderFactory

pytestmark = pytest.mark.drf

ERRORS = [
    (exceptions.InvalidKey(), 400, "invalid-idempotency-key"),
    (exceptions.MissingKey(), 400, "missing-idempotency-key"),
    (exceptions.AuthenticationRequired(), 403, "idempotency-key-requires-authentication"),
    (exceptions.PayloadTooLarge(), 413, "payload-too-large"),
    (exceptions.KeyMismatch(), 422, "idempotency-key-mismatch"),
    (exceptions.RequestInFlight(), 409, "idempotency-request-in-flight"),
    (exceptions.ReferenceConflict("order:7"), 409, "idempotency-reference-conflict"),
    (exceptions.ResponseNotStorable(), 500, "idempotency-response-not-storable"),
]


@pytest.mark.parametrize(("error", "status", "code"), ERRORS, ids=[e[2] for e in ERRORS])
def test_every_layer_error_renders_as_a_problem(assert_problem, error, status, code) -> None:
    document = assert_problem(error_response(error), status, code)
    assert document["type"].startswith("https://")
    assert document["detail"] == error.detail


def test_an_error_subclass_without_a_status_of_its_own_is_a_complete_problem(
    assert_problem,
) -> None:
    assert_problem(error_response(exceptions.IdempotencyError()), 400, "idempotency-error")


def test_in_flight_tells_the_client_when_to_retry() -> None:
    assert error_response(exceptions.RequestInFlight())["Retry-After"] == "1"
    with override_settings(IDEMPOTENCY_RETRY_AFTER=7):
        assert error_response(exceptions.RequestInFlight())["Retry-After"] == "7"


def test_a_reference_conflict_names_the_reference() -> None:
    detail = json.loads(error_response(exceptions.ReferenceConflict("order:7")).content)["detail"]
    assert "order:7" in detail


@override_settings(IDEMPOTENCY_PROBLEM_TYPE_BASE="https://example.com/problems/")
def test_the_type_uri_base_is_a_setting() -> None:
    document = json.loads(error_response(exceptions.MissingKey()).content)
    assert document["type"] == "https://example.com/problems/missing-idempotency-key"


# -- the DRF exception handler, used by the example project --------------------------------


@pytest.mark.django_db
def test_validation_errors_carry_an_errors_member(post, user, assert_problem) -> None:
    order = OrderFactory(owner=user)
    response = post("/api/payments/", {"order": order.pk, "amount": "-1"}, key="k")
    document = assert_problem(response, 400, "invalid")
    assert set(document["errors"]) == {"amount"}
    assert isinstance(document["errors"]["amount"], list)


@pytest.mark.django_db
def test_malformed_json_is_a_problem(api, assert_problem) -> None:
    response = api.post(
        "/api/payments/", "{nope", content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 400, "parse-error")


@pytest.mark.django_db
def test_a_declined_payment_is_a_problem(post, user, assert_problem) -> None:
    order = OrderFactory(owner=user)
    response = post("/api/payments/", {"order": order.pk, "amount": "20000.00"}, key="k")
    assert "declined" in assert_problem(response, 402, "payment-declined")["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/orders/999999/", 404, "not-found"),
        ("put", "/api/orders/", 405, "method-not-allowed"),
        ("delete", "/api/orders/", 405, "method-not-allowed"),
    ],
)
def test_other_api_errors_are_problems(
    api, assert_problem, method: str, path: str, status: int, code: str
) -> None:
    assert_problem(getattr(api, method)(path), status, code)


@pytest.mark.django_db
def test_an_unsupported_media_type_is_a_problem(api, assert_problem) -> None:
    response = api.post(
        "/api/payments/", "order=1", content_type="text/plain", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert_problem(response, 415, "unsupported-media-type")


@pytest.mark.django_db
def test_an_unauthenticated_client_gets_a_problem(anon, assert_problem) -> None:
    assert_problem(anon.get("/api/orders/"), 401, "not-authenticated")


@pytest.mark.django_db
def test_layer_errors_follow_drfs_own_handler_when_the_project_keeps_it(post, settings) -> None:
    """A project that keeps DRF's default handler gets the layer's refusals in DRF's shape,
    like every other error of its API (issue 15, item 6)."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
    }
    missing = post("/test/probe/", {})
    assert missing.status_code == 400
    assert missing["Content-Type"] == "application/json"
    assert missing.json() == {"detail": "This endpoint requires an Idempotency-Key header."}
    post("/test/probe/", {"label": "a"}, key="k")
    mismatch = post("/test/probe/", {"label": "b"}, key="k")
    assert mismatch.status_code == 422
    assert mismatch["Content-Type"] == "application/json"
    assert set(mismatch.json()) == {"detail"}
    validation = post("/test/probe/", {"raise": "validation"}, key="k2")
    assert validation["Content-Type"] == "application/json"


def test_the_server_error_handler_answers_in_problem_json(api, assert_problem) -> None:
    api.raise_request_exception = False
    response = api.post(
        "/test/probe/", {"raise": "crash"}, format="json", HTTP_IDEMPOTENCY_KEY="crash"
    )
    document = assert_problem(response, 500, "server-error")
    # The failure may follow the commit: only the same key is a safe retry.
    assert "same Idempotency-Key" in document["detail"]
