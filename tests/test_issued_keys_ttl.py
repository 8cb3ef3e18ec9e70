"""A view that requires issued keys stores its answer for at least the key's lifetime, by one
rule on every door that takes them (DRF, plain views, ninja).

An issued key is accepted for ``IDEMPOTENCY_ISSUED_KEY_MAX_AGE``; a view whose own TTL is
shorter would otherwise forget the answer while the key is still good, and a late retry under
that key would run the operation a second time.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from django_idempotency.core.issued_keys import issue_key
from django_idempotency.core.principals import user_principal
from django_idempotency.models import IdempotencyRecord
from tests.conftest import client_for
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

PROBE = "/test/w11/issued-ttl-probe/"
ACTION = "/test/w11/issued-ttl-probe/poke/"
# Longer than the views' 500 ms TTL: a record kept only for that TTL has expired by then.
PAST_THE_VIEW_TTL = 0.7


def issued(api: Any) -> str:
    response = api.post("/api/idempotency-keys/")
    assert response.status_code == 201, response.content
    return str(response.json()["key"])


@pytest.mark.parametrize("path", [PROBE, ACTION], ids=["create", "action"])
def test_a_late_retry_under_an_issued_key_is_a_replay(api: Any, post: Any, path: str) -> None:
    key = issued(api)
    first = post(path, {"label": "once"}, key=key)
    assert first.status_code == 201, first.content
    time.sleep(PAST_THE_VIEW_TTL)
    again = post(path, {"label": "once"}, key=key)
    assert again.status_code == 201, again.content
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("path", [PROBE, ACTION], ids=["create", "action"])
def test_the_record_lives_as_long_as_the_issued_key(api: Any, post: Any, path: str) -> None:
    post(path, {}, key=issued(api))
    record = IdempotencyRecord.objects.get()
    assert record.expires_at - record.completed_at == timedelta(hours=24)


# -- One rule on every door that takes issued keys ----------------------------------------------


def _drf(user: Any, key: str) -> Any:
    return client_for(user).post(PROBE, {}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def _plain(user: Any, key: str) -> Any:
    client = Client()
    client.force_login(user)
    return client.post("/test/issued/plain/", {"label": "plain"}, HTTP_IDEMPOTENCY_KEY=key)


def _ninja(user: Any, key: str) -> Any:
    token, _ = Token.objects.get_or_create(user=user)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return client.post(
        "/test/issued/ninja/probe/", "{}", content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


DOORS = {"drf": _drf, "plain": _plain, "ninja": _ninja}


@pytest.mark.urls("tests.urls_issued_keys")
@pytest.mark.parametrize("send", list(DOORS.values()), ids=list(DOORS))
@pytest.mark.parametrize(
    ("settings_", "kept"),
    [
        ({}, timedelta(hours=24)),
        # A key may start an operation for IDEMPOTENCY_TTL at most, so that is enough.
        (
            {"IDEMPOTENCY_TTL": 3600, "IDEMPOTENCY_ISSUED_KEY_MAX_AGE": 24 * 3600},
            timedelta(hours=1),
        ),
        ({"IDEMPOTENCY_ISSUED_KEY_MAX_AGE": 600}, timedelta(minutes=10)),
    ],
    ids=["defaults", "ttl-below-max-age", "short-max-age"],
)
def test_every_door_keeps_the_answer_as_long_as_a_key_may_start_one(
    user: Any, send: Any, settings_: dict[str, Any], kept: timedelta
) -> None:
    with override_settings(**settings_):
        response = send(user, issue_key(user_principal(user) or "").key)
        assert response.status_code == 201, response.content
    record = IdempotencyRecord.objects.get()
    assert record.completed_at is not None
    assert record.expires_at - record.completed_at == kept
