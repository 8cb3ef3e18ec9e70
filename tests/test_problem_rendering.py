"""The layer's own problems and the API's (DRF-rendered) problems are spelled alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_idempotency import exceptions
from django_idempotency.core.problems import error_response
from django_idempotency.core.responses import StoredResponse

pytestmark = pytest.mark.drf


def drf_spelling(body: bytes) -> bytes:
    """The body as DRF's default JSONRenderer writes it: compact separators, UTF-8."""
    return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()


def test_a_layer_problem_is_compact_like_drf() -> None:
    body = error_response(exceptions.ReferenceConflict("order:7")).content
    assert body == drf_spelling(body)


def test_a_layer_problem_and_an_api_problem_are_spelled_alike(post: Any) -> None:
    refused = post("/api/orders/", {"item": "book", "quantity": 1}, key="k" * 256)  # layer
    invalid = post("/api/orders/", {"quantity": "many"}, key="fresh-key")  # DRF validation
    assert (refused.status_code, invalid.status_code) == (400, 400)
    for response in (refused, invalid):
        assert response["Content-Type"] == "application/problem+json"
        assert response.content == drf_spelling(response.content)


def test_the_stored_stand_in_for_an_oversized_response_is_compact_like_drf() -> None:
    body = StoredResponse.too_large(201, [("Location", "/api/orders/7/")], 10**7).body
    assert body == drf_spelling(body)
