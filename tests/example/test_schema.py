"""The OpenAPI schema of the example API documents the idempotency layer (drf-spectacular)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.utils import extend_schema
from drf_spectacular.validation import validate_schema
from rest_framework import mixins, viewsets

from django_idempotency.drf import IdempotentCreateMixin
from django_idempotency.drf.openapi import KEY_PATTERN
from example_project.shop.models import Order
from example_project.shop.serializers import OrderSerializer

pytestmark = pytest.mark.drf

PROBLEM_REF = "#/components/schemas/Problem"
IDEMPOTENT_POSTS = {"/api/orders/": True, "/api/payments/": True, "/api/notes/": False}


def example_schema() -> dict[str, Any]:
    return SchemaGenerator(urlconf="example_project.urls").get_schema(request=None, public=True)


def key_parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]


def test_the_example_schema_is_valid_openapi() -> None:
    schema = example_schema()
    validate_schema(schema)  # raises on an invalid document
    assert set(IDEMPOTENT_POSTS) <= set(schema["paths"])


@pytest.mark.parametrize(("route", "required"), IDEMPOTENT_POSTS.items())
def test_idempotent_posts_document_the_key_header(route: str, required: bool) -> None:
    operation = example_schema()["paths"][route]["post"]
    [parameter] = key_parameters(operation)
    assert parameter["in"] == "header"
    assert parameter.get("required", False) is required
    assert parameter["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": KEY_PATTERN,
    }
    assert "quoted" in parameter["description"]


@pytest.mark.parametrize("route", IDEMPOTENT_POSTS)
def test_idempotent_posts_document_their_problem_answers(route: str) -> None:
    responses = example_schema()["paths"][route]["post"]["responses"]
    for code in ("400", "409", "422"):
        content = responses[code]["content"]
        assert content["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}, code
        assert responses[code]["description"], code
    assert responses["409"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "Idempotent-Replayed" in responses["201"]["headers"]
    assert "Idempotent-Replayed" not in responses["400"].get("headers", {})


def test_the_problem_component_has_the_rfc_9457_members() -> None:
    problem = example_schema()["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {"type", "title", "status", "detail", "errors"}
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


def test_reads_are_left_alone() -> None:
    paths = example_schema()["paths"]
    for route in ("/api/orders/", "/api/orders/{id}/", "/api/payments/", "/api/notes/"):
        operation = paths[route]["get"]
        assert key_parameters(operation) == [], route
        assert set(operation["responses"]) == {"200"}, route


def test_the_mixin_docstring_does_not_leak_into_the_api_description() -> None:
    for route in IDEMPOTENT_POSTS:
        operation = example_schema()["paths"][route]["post"]
        assert "Idempotency-Key``" not in operation.get("description", "")


@override_settings(IDEMPOTENCY_MISMATCH_STATUS=409, IDEMPOTENCY_HEADER="X-Request-Key")
def test_settings_are_read_when_the_schema_is_built() -> None:
    operation = example_schema()["paths"]["/api/orders/"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["X-Request-Key"]
    assert "422" not in operation["responses"]
    # One status, two meanings: both are described.
    assert "different method, path or body" in operation["responses"]["409"]["description"]
    assert "still running" in operation["responses"]["409"]["description"]


@extend_schema(responses={201: OrderSerializer})
class OverriddenOrderViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):  # type: ignore[type-arg]
    """Orders, documented by hand."""

    queryset = Order.objects.all()
    serializer_class = OrderSerializer


urlpatterns = [path("orders/", OverriddenOrderViewSet.as_view({"post": "create"}))]


def test_extend_schema_responses_still_get_the_problem_answers() -> None:
    schema = SchemaGenerator(urlconf=__name__).get_schema(request=None, public=True)
    operation = schema["paths"]["/orders/"]["post"]
    assert operation["description"] == "Orders, documented by hand."
    assert set(operation["responses"]) == {"201", "400", "403", "409", "413", "422"}
    assert len(key_parameters(operation)) == 1


@pytest.mark.django_db
def test_the_schema_is_served(anon: Any) -> None:
    response = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    operation = response.json()["paths"]["/api/orders/"]["post"]
    assert len(key_parameters(operation)) == 1
