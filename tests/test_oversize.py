"""Oversized stored responses (issue 9.12): the default fits an echo of any accepted request,
and a response still too large commits and replays a problem pointing to the resource."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_idempotency.conf import app_settings
from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Note
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def test_the_default_limit_fits_an_echo_of_the_largest_accepted_request(settings) -> None:
    assert app_settings.MAX_STORED_BODY_SIZE > 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
    assert app_settings.MAX_STORED_BODY_SIZE > 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_a_one_mebibyte_note_is_stored_and_replayed_whole(post) -> None:
    text = "x" * (1024 * 1024)
    first = post("/api/notes/", {"text": text}, key="big")
    again = post("/api/notes/", {"text": text}, key="big")
    assert first.status_code == 201, first.content[:300]
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Note.objects.count() == 1


@override_settings(IDEMPOTENCY_MAX_STORED_BODY_SIZE=300)
def test_a_response_over_the_limit_commits_and_replays_a_problem(post) -> None:
    body = {"size": 400, "headers": {"Location": "/test/probe/7/", "X-Order-Id": "7"}}
    first = post("/test/probe/", body, key="k")
    # The first client gets the whole answer; the effect is committed once.
    assert first.status_code == 201
    assert len(first.content) > 300
    assert Execution.objects.count() == 1
    again = post("/test/probe/", body, key="k")
    assert again.status_code == 201  # a success stays a success: no retry under a new key
    assert again["Idempotent-Replayed"] == "true"
    assert again["Content-Type"] == "application/problem+json"
    assert again["Location"] == "/test/probe/7/"
    assert again["X-Order-Id"] == "7"
    assert not again.has_header("ETag")  # it described the body that was not kept
    document = json.loads(again.content)
    assert document["type"].endswith("#idempotency-response-too-large")
    assert document["location"] == "/test/probe/7/"
    assert "/test/probe/7/" in document["detail"]
    assert Execution.objects.count() == 1
    record = IdempotencyRecord.objects.get()
    assert len(bytes(record.response_body)) <= 1000


@override_settings(IDEMPOTENCY_MAX_STORED_BODY_SIZE=10)
def test_an_oversized_order_is_never_made_twice(post) -> None:
    body = {"item": "book", "quantity": 1}
    first = post("/api/orders/", body, key="order-1")
    again = post("/api/orders/", body, key="order-1")
    assert first.status_code == again.status_code == 201
    assert again["Location"] == first["Location"]
    assert json.loads(again.content)["location"] == first["Location"]
