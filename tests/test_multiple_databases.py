"""The record lives on the alias the view writes to, beside its business rows."""

from __future__ import annotations

import pytest

from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

pytestmark = [
    pytest.mark.drf,
    pytest.mark.django_db(databases=["default", "other"], transaction=True),
]


def test_the_record_is_stored_on_the_views_database(post) -> None:
    first = post("/test/other-db-probe/", {"label": "elsewhere"}, key="k")
    replay = post("/test/other-db-probe/", {"label": "elsewhere"}, key="k")

    assert first.status_code == 201
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Execution.objects.using("other").count() == 1
    assert Execution.objects.using("default").count() == 0
    assert IdempotencyRecord.objects.using("other").count() == 1
    assert IdempotencyRecord.objects.using("default").count() == 0


def test_a_released_answer_rolls_back_on_the_views_database(post) -> None:
    refused = post("/test/other-db-probe/", {"label": "x", "status": 409}, key="k")
    retried = post("/test/other-db-probe/", {"label": "x"}, key="k")

    assert refused.status_code == 409
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert Execution.objects.using("other").count() == 1
    assert IdempotencyRecord.objects.using("other").count() == 1


def test_an_explicit_database_wins_over_the_queryset_attribute(post) -> None:
    first = post("/test/overridden-queryset-probe/", {"label": "routed"}, key="k")
    replay = post("/test/overridden-queryset-probe/", {"label": "routed"}, key="k")

    assert first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"
    assert Execution.objects.using("default").count() == 0
    assert IdempotencyRecord.objects.using("other").count() == 1
    assert IdempotencyRecord.objects.using("default").count() == 0
