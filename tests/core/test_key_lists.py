"""Two Idempotency-Key headers arrive joined by a comma: a list is not an sf-string (issue 9.7)."""

from __future__ import annotations

import re

import pytest

from django_idempotency.core.keys import parse_key
from django_idempotency.drf.openapi import KEY_PATTERN
from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


@pytest.mark.parametrize("raw", ["a,b", "a, b", "a,a", "k1 ,k2", '"a", "b"', '"a",b', "a,"])
def test_a_list_of_keys_is_refused_before_the_view(post, assert_problem, raw: str) -> None:
    document = assert_problem(post("/test/probe/", {"label": "a"}, key=raw), 400)
    assert document["type"].endswith("#invalid-idempotency-key")
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_list_never_replays_one_of_its_members(post, assert_problem) -> None:
    first = post("/test/probe/", {"label": "a"}, key="a")
    assert first.status_code == 201
    assert_problem(post("/test/probe/", {"label": "a"}, key="a,a"), 400)
    assert_problem(post("/test/probe/", {"label": "a"}, key="a, b"), 400)
    assert Execution.objects.count() == 1


def test_a_quoted_key_may_hold_a_comma(post) -> None:
    assert parse_key('"a,b"') == "a,b"
    first = post("/test/probe/", {"label": "a"}, key='"a, b"')
    again = post("/test/probe/", {"label": "a"}, key='"a, b"')
    assert first.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == "a, b"


def test_the_openapi_pattern_leaves_out_the_bare_comma() -> None:
    assert re.fullmatch(KEY_PATTERN, "a-b+c~")
    assert not re.fullmatch(KEY_PATTERN, "a,b")
    assert not re.fullmatch(KEY_PATTERN, "a, b")
