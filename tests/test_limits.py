"""Size limits: oversized request bodies are a 413, streaming responses are refused whole."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Note
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

BIG = {"label": "x" * 2000}


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/test/probe/", "k"),
        ("/test/optional-probe/", "k"),
        ("/test/optional-probe/", None),  # the limit holds without a key too
    ],
)
def test_a_body_over_the_upload_limit_is_a_413_problem(
    post, assert_problem, path: str, key: str | None
) -> None:
    assert_problem(post(path, BIG, key=key), 413, "payload-too-large")
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_the_example_notes_refuse_an_oversized_body_without_a_key(post, assert_problem) -> None:
    assert_problem(post("/api/notes/", {"text": "x" * 2000}), 413)
    assert Note.objects.count() == 0


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_a_form_body_over_the_upload_limit_is_a_413_problem(api, assert_problem) -> None:
    body = "label=" + "x" * 2000
    for headers in ({"HTTP_IDEMPOTENCY_KEY": "k"}, {}):
        response = api.post(
            "/test/optional-probe/",
            body,
            content_type="application/x-www-form-urlencoded",
            **headers,
        )
        assert_problem(response, 413)
    assert Execution.objects.count() == 0


def test_a_streaming_response_is_refused_and_rolled_back(post, assert_problem) -> None:
    document = assert_problem(
        post("/test/probe/", {"stream": True}, key="k"), 500, "idempotency-response-not-storable"
    )
    assert "streaming" in document["detail"]
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_streaming_response_without_a_key_is_streamed(post) -> None:
    response = post("/test/optional-probe/", {"stream": True})
    assert response.streaming
    assert b"".join(response.streaming_content) == b"ab"
    assert Execution.objects.count() == 1


@override_settings(IDEMPOTENCY_MAX_STORED_BODY_SIZE=300)
def test_a_response_over_the_stored_size_commits_and_replays_a_problem(post) -> None:
    """Once a 500 with the effect rolled back; now stored as a stand-in (tests/test_oversize.py)."""
    first = post("/test/probe/", {"size": 400}, key="k")
    assert first.status_code == 201
    again = post("/test/probe/", {"size": 400}, key="k")
    assert again.status_code == 201
    assert again["Content-Type"] == "application/problem+json"
    assert "IDEMPOTENCY_MAX_STORED_BODY_SIZE" in json.loads(again.content)["detail"]
    assert Execution.objects.count() == 1
    assert len(bytes(IdempotencyRecord.objects.get().response_body)) <= 1000
