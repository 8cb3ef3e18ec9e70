import pytest

from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def test_first_request_runs_and_retry_replays(post):
    first = post("/test/probe/", {"label": "a"}, key="k1")
    second = post("/test/probe/", {"label": "a"}, key="k1")
    assert first.status_code == 201, first.content
    assert second.status_code == 201
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert Execution.objects.count() == 1
