"""A key reused with a different request is refused; its stored response stays as it was."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_idempotency.models import IdempotencyRecord
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def stored_state(record: IdempotencyRecord) -> tuple[object, ...]:
    return (
        record.fingerprint,
        record.response_status,
        record.response_headers,
        bytes(record.response_body),
        record.expires_at,
        record.reference,
    )


def test_other_body_under_a_used_key_is_a_422_problem(post, assert_problem) -> None:
    first = post("/test/probe/", {"label": "a"}, key="k")
    before = IdempotencyRecord.objects.get()
    refused = post("/test/probe/", {"label": "b"}, key="k")
    document = assert_problem(refused, 422, "idempotency-key-mismatch")
    assert "Idempotency-Key" in document["title"]
    assert not refused.has_header("Idempotent-Replayed")
    assert Execution.objects.count() == 1
    after = IdempotencyRecord.objects.get()
    assert stored_state(after) == stored_state(before)
    assert (after.replay_count, after.conflict_count) == (0, 1)
    # The original request still gets its own answer, and the counters keep moving.
    again = post("/test/probe/", {"label": "a"}, key="k")
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    post("/test/probe/", {"label": "c"}, key="k")
    after = IdempotencyRecord.objects.get()
    assert (after.replay_count, after.conflict_count) == (1, 2)


@override_settings(IDEMPOTENCY_MISMATCH_STATUS=409)
def test_the_mismatch_status_is_configurable(post, assert_problem) -> None:
    post("/test/probe/", {"label": "a"}, key="k")
    assert_problem(post("/test/probe/", {"label": "b"}, key="k"), 409, "idempotency-key-mismatch")
    assert Execution.objects.count() == 1


def test_a_stored_refusal_is_guarded_too(post, assert_problem) -> None:
    post("/test/probe/", {"status": 402}, key="k")
    assert_problem(post("/test/probe/", {"status": 201}, key="k"), 422)
    assert IdempotencyRecord.objects.get().response_status == 402
    assert Execution.objects.count() == 1


def test_the_key_rule_comes_before_the_reference_rule(post, assert_problem) -> None:
    """A reused key is judged by its own record, even when its new body names a reference
    that another key holds (which on its own would be a 409 reference conflict)."""
    post("/test/probe/", {"ref": "r1", "label": "a"}, key="k1")
    post("/test/probe/", {"ref": "r2", "label": "b"}, key="k2")
    assert_problem(post("/test/probe/", {"ref": "r1", "label": "x"}, key="k2"), 422)
    assert_problem(post("/test/probe/", {"ref": "r2", "label": "x"}, key="k2"), 422)
    # Without the reused key, the same body is a reference conflict.
    assert_problem(
        post("/test/probe/", {"ref": "r1", "label": "x"}, key="k3"),
        409,
        "idempotency-reference-conflict",
    )
    counts = dict(IdempotencyRecord.objects.values_list("key", "conflict_count"))
    assert counts == {"k1": 1, "k2": 2}
    assert Execution.objects.count() == 2
