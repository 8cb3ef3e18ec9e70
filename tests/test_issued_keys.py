"""Server-issued keys for API clients: ``POST /api/idempotency-keys/`` and a view that
requires them (``POST /api/transfers/``, ``idempotency_key_source = "issued"``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_idempotency.exceptions import InvalidIssuedKey, IssuedKeyExpired
from django_idempotency.issued_keys import issue_key, verify_issued_key
from example_project.shop.models import Transfer
from tests.conftest import client_for, race

KEYS = "/api/idempotency-keys/"
TRANSFERS = "/api/transfers/"
BODY = {"amount": "12.50", "to": "DE89 3704 0044 0532 0130 00"}


def issued(api: Any) -> str:
    response = api.post(KEYS)
    assert response.status_code == 201, response.content
    return str(response.json()["key"])


@pytest.mark.django_db
class TestIssuing:
    def test_issues_a_key_with_its_expiry(self, api: Any) -> None:
        response = api.post(KEYS)
        assert response.status_code == 201
        assert response["Cache-Control"] == "no-store"
        document = response.json()
        assert set(document) == {"key", "expires_at"}
        expires_at = parse_datetime(document["expires_at"])
        assert expires_at is not None
        assert timedelta(hours=23) < expires_at - timezone.now() <= timedelta(hours=24)
        assert issued(api) != document["key"]

    def test_anonymous_gets_none(self, anon: Any, assert_problem: Any) -> None:
        assert_problem(anon.post(KEYS), 401)

    def test_expiry_never_outlives_the_record(self) -> None:
        with override_settings(IDEMPOTENCY_TTL=60, IDEMPOTENCY_ISSUED_KEY_MAX_AGE=3600):
            key = issue_key("auth.user:1")
            assert key.expires_at - timezone.now() <= timedelta(seconds=60)


class TestVerification:
    def test_bound_to_principal_and_endpoint(self) -> None:
        form_key = issue_key("auth.user:1", "checkout").key
        verify_issued_key(form_key, principal="auth.user:1", endpoint="checkout")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(form_key, principal="auth.user:2", endpoint="checkout")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(form_key, principal="auth.user:1", endpoint="transfer")
        api_key = issue_key("auth.user:1").key  # any endpoint, this principal only
        verify_issued_key(api_key, principal="auth.user:1", endpoint="transfer")
        with pytest.raises(InvalidIssuedKey):
            verify_issued_key(api_key, principal="auth.user:2", endpoint="transfer")

    def test_expired_is_its_own_refusal(self) -> None:
        key = issue_key("auth.user:1").key
        with (
            override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=-1),
            pytest.raises(IssuedKeyExpired),
        ):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")

    def test_secret_rotation_keeps_keys_in_flight(self) -> None:
        with override_settings(SECRET_KEY="old-secret-old-secret-old-secret-old-secret"):
            key = issue_key("auth.user:1").key
        with override_settings(
            SECRET_KEY="new-secret-new-secret-new-secret-new-secret",
            SECRET_KEY_FALLBACKS=["old-secret-old-secret-old-secret-old-secret"],
        ):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")
        with (
            override_settings(SECRET_KEY="new-secret-new-secret-new-secret-new-secret"),
            pytest.raises(InvalidIssuedKey),
        ):
            verify_issued_key(key, principal="auth.user:1", endpoint="x")


@pytest.mark.django_db
class TestTransfers:
    def test_issued_key_creates_then_replays(self, api: Any, post: Any) -> None:
        key = issued(api)
        first = post(TRANSFERS, BODY, key=key)
        assert first.status_code == 201, first.content
        assert set(first.json()) == {"id", "amount", "to", "created_at"}
        second = post(TRANSFERS, BODY, key=key)
        assert second.content == first.content
        assert second["Idempotent-Replayed"] == "true"
        assert Transfer.objects.count() == 1

    def test_client_made_key_is_400(self, post: Any, assert_problem: Any) -> None:
        assert_problem(post(TRANSFERS, BODY, key="my-own-key"), 400, "invalid-issued-key")
        assert Transfer.objects.count() == 0

    def test_missing_key_is_400(self, post: Any, assert_problem: Any) -> None:
        assert_problem(post(TRANSFERS, BODY), 400, "missing-idempotency-key")

    def test_tampered_key_is_400(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        nonce, rest = key.split(":", 1)
        tampered = nonce[::-1] + ":" + rest
        assert_problem(post(TRANSFERS, BODY, key=tampered), 400, "invalid-issued-key")

    def test_key_of_another_user_is_400(
        self, post: Any, other_api: Any, assert_problem: Any
    ) -> None:
        bobs = issued(other_api)
        assert_problem(post(TRANSFERS, BODY, key=bobs), 400, "invalid-issued-key")
        assert Transfer.objects.count() == 0

    def test_expired_key_is_400(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        with override_settings(IDEMPOTENCY_ISSUED_KEY_MAX_AGE=-1):
            assert_problem(post(TRANSFERS, BODY, key=key), 400, "issued-key-expired")

    def test_mismatch_under_an_issued_key(self, api: Any, post: Any, assert_problem: Any) -> None:
        key = issued(api)
        post(TRANSFERS, BODY, key=key)
        assert_problem(post(TRANSFERS, {**BODY, "amount": "13.00"}, key=key), 422)
        assert Transfer.objects.count() == 1

    def test_invalid_body_releases_the_issued_key(self, api: Any, post: Any) -> None:
        key = issued(api)
        assert post(TRANSFERS, {**BODY, "amount": "-1"}, key=key).status_code == 400
        assert post(TRANSFERS, BODY, key=key).status_code == 201
        assert Transfer.objects.count() == 1

    def test_other_views_keep_taking_client_keys(self, post: Any) -> None:
        assert post("/api/orders/", {"item": "a", "quantity": 1}, key="mine").status_code == 201


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_copies_of_one_transfer_run_once(user: Any) -> None:
    client = client_for(user)
    key = issued(client)
    copies = 8

    def one(_: int) -> Any:
        return client.post(TRANSFERS, BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)

    responses = race(copies, one)
    assert [r.status_code for r in responses] == [201] * copies
    assert len({r.content for r in responses}) == 1
    assert Transfer.objects.count() == 1


@pytest.mark.django_db
def test_openapi_documents_the_issuing_view(api: Any) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/idempotency-keys/"]["post"]
    assert "requestBody" not in operation
    assert list(operation["responses"]) == ["201"]
    transfer = schema["paths"]["/api/transfers/"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in transfer["parameters"])
