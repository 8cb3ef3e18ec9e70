"""OpenAPI for every ``@idempotent`` handler, in the shape the exception handler renders."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.routers import SimpleRouter

from tests.testapp.views_drf import PlainAPIView, UnwrappedRoutesViewSet

pytestmark = pytest.mark.drf

router = SimpleRouter()
router.register("things", UnwrappedRoutesViewSet, basename="thing")
urlpatterns = [path("", include(router.urls)), path("plain/", PlainAPIView.as_view())]


def schema() -> dict[str, Any]:
    document = SchemaGenerator(urlconf=__name__).get_schema(request=None, public=True)
    validate_schema(document)
    return document


def key_header(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]


def test_decorated_handlers_document_the_header_and_every_refusal() -> None:
    paths = schema()["paths"]
    for operation in (
        paths["/things/{id}/settle/"]["post"],
        paths["/things/"]["post"],  # the mixin's create()
        paths["/plain/"]["post"],
    ):
        assert len(key_header(operation)) == 1
        responses = operation["responses"]
        for code in ("400", "403", "409", "413", "422"):
            assert "application/problem+json" in responses[code]["content"], code
        assert "Idempotent-Replayed" in next(
            response["headers"] for code, response in responses.items() if code.startswith("2")
        )


def test_undecorated_handlers_are_left_alone() -> None:
    paths = schema()["paths"]
    for operation in (
        paths["/things/{id}/archive/"]["post"],
        paths["/things/{id}/"]["put"],
        paths["/things/{id}/"]["patch"],
        paths["/things/{id}/"]["delete"],
    ):
        assert key_header(operation) == []
        assert "413" not in operation["responses"]


def test_with_drfs_own_handler_the_refusals_are_documented_as_detail(settings) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
    }
    responses = schema()["paths"]["/things/{id}/settle/"]["post"]["responses"]
    for code in ("403", "409", "413", "422"):
        assert set(responses[code]["content"]) == {"application/json"}, code
        body = responses[code]["content"]["application/json"]["schema"]
        assert body["required"] == ["detail"]


def test_generic_views_are_documented() -> None:
    from tests.testapp.views_drf import GenericListCreateView

    generator = SchemaGenerator(
        patterns=[path("generic/", GenericListCreateView.as_view())], urlconf=None
    )
    operation = generator.get_schema(request=None, public=True)["paths"]["/generic/"]["post"]
    assert len(key_header(operation)) == 1
