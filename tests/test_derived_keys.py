"""Derived keys: one stable, secret-keyed key per downstream call of an idempotent operation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from django_idempotency.core.derived_keys import PREFIX, NoCurrentOperation, derive_key, hmac_key
from django_idempotency.core.operation import current_operation
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import run_once
from example_project.shop.models import GatewayCharge, Payment
from tests.factories import OrderFactory

pytestmark = pytest.mark.drf

FP = "f" * 64  # the operation's fingerprint
PRINTABLE = {chr(code) for code in range(0x20, 0x7F)}


def test_a_derived_key_is_stable_and_a_valid_idempotency_key() -> None:
    key = hmac_key("payment-list|auth.user:1", "client-key", "charge", FP)

    assert key == hmac_key("payment-list|auth.user:1", "client-key", "charge", FP)
    assert key.startswith(PREFIX)
    assert len(key) <= 255
    assert set(key) <= PRINTABLE
    assert "client-key" not in key


@pytest.mark.parametrize(
    ("scope", "key", "label"),
    [
        ("payment-list|auth.user:2", "client-key", "charge"),  # another principal
        ("order-list|auth.user:1", "client-key", "charge"),  # another endpoint
        ("payment-list|auth.user:1", "client-key-2", "charge"),  # another key
        ("payment-list|auth.user:1", "client-key", "refund"),  # another label
        # Separators cannot be shifted from one part into the next.
        ("payment-list|auth.user:1client-key", "", "charge"),
    ],
)
def test_any_other_part_gives_another_key(scope: str, key: str, label: str) -> None:
    assert hmac_key(scope, key, label, FP) != hmac_key(
        "payment-list|auth.user:1", "client-key", "charge", FP
    )


def test_the_secret_is_part_of_the_key() -> None:
    before = hmac_key("s", "k", "charge", FP)
    with override_settings(IDEMPOTENCY_DERIVED_KEY_SECRET="another-secret"):
        assert hmac_key("s", "k", "charge", FP) != before
    with override_settings(SECRET_KEY="rotated-secret-key-for-the-test"):
        assert hmac_key("s", "k", "charge", FP) != before


def test_outside_an_operation_there_is_no_key() -> None:
    assert current_operation() is None
    with pytest.raises(NoCurrentOperation):
        derive_key("charge")


@pytest.mark.django_db
def test_a_function_run_once_derives_the_same_key_on_its_retry() -> None:
    seen: list[str] = []

    def job() -> str:
        seen.append(derive_key("charge"))
        if len(seen) == 1:
            raise ConnectionError("died after the downstream call")
        return seen[-1]

    with pytest.raises(ConnectionError):
        run_once(job, scope="jobs", key="k")
    assert run_once(job, scope="jobs", key="k") == seen[0] == seen[1]
    assert current_operation() is None  # reset once the operation is over


# -- the example's payment view hands the gateway a derived key ---------------------------


def pay(client: APIClient, order: int, key: str) -> Any:
    return client.post(
        "/api/payments/", {"order": order, "amount": "25.00"}, HTTP_IDEMPOTENCY_KEY=key
    )


@pytest.mark.django_db
def test_the_payment_view_passes_the_gateway_a_derived_key(api: APIClient, user: Any) -> None:
    order = OrderFactory(owner=user)
    response = pay(api, order.pk, "pay-1")
    assert response.status_code == 201, response.content

    charge = GatewayCharge.objects.get()
    assert charge.order == order.pk
    assert charge.amount == Decimal("25.00")
    record = IdempotencyRecord.objects.get(key="pay-1")
    assert charge.idempotency_key == hmac_key(
        f"payment-list|auth.user:{user.pk}", "pay-1", "charge", record.fingerprint
    )
    assert Payment.objects.get().charge_id == charge.id

    listed = api.get(f"/api/gateway/charges/?order={order.pk}")
    assert listed.json() == [
        {
            "id": charge.id,
            "order": order.pk,
            "amount": "25.00",
            "idempotency_key": charge.idempotency_key,
        }
    ]
    assert api.get(f"/api/gateway/charges/?order={order.pk + 1}").json() == []


@pytest.mark.django_db
def test_the_gateway_answers_a_known_key_with_the_first_charge(api: APIClient, user: Any) -> None:
    """What a retry after a crash does: the view runs again, the gateway charges no more."""
    from example_project.shop.gateway import charge

    first = charge(Decimal("5.00"), order_id=1, idempotency_key="idk_x")
    assert charge(Decimal("5.00"), order_id=1, idempotency_key="idk_x") == first
    assert charge(Decimal("5.00"), order_id=1) != first
    assert GatewayCharge.objects.count() == 2


@pytest.mark.django_db
def test_without_derived_keys_the_gateway_gets_none(
    api: APIClient, user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXAMPLE_DERIVED_KEYS", "0")
    order = OrderFactory(owner=user)
    assert pay(api, order.pk, "pay-2").status_code == 201
    assert GatewayCharge.objects.get().idempotency_key is None


@pytest.mark.django_db
def test_a_retry_after_a_release_keeps_its_downstream_key_unless_its_content_changed() -> None:
    """The decision (docs/side-effects.md, "Derived keys"): the fingerprint stays in the key.

    A retry can reach the run with another fingerprint only after the first run left no
    record (it failed, or died after the downstream call): with a record, the door refuses it
    (``KeyMismatch``, a 422) before anything derives a key. What only looks different — member
    order, whitespace — is one fingerprint, so one downstream key; other content is another
    request, and a callee that deduplicates by key alone must not answer it with the first
    one's charge (a false replay), so it gets another key.
    """
    derived: list[str] = []

    def charge_then_fail() -> None:
        derived.append(derive_key("charge"))
        raise RuntimeError("died after the charge")

    def attempt(body: bytes) -> None:
        with pytest.raises(RuntimeError):
            run_once(charge_then_fail, scope="pay", key="k", fingerprint=body_fingerprint(body))

    attempt(b'{"amount": "10.00", "note": "gift"}')
    attempt(b'{"note":"gift","amount":"10.00"}')  # the same request, spelled otherwise
    attempt(b'{"amount": "10.00", "note": "a gift"}')  # other content

    assert derived[0] == derived[1]
    assert derived[2] != derived[0]
    assert not IdempotencyRecord.objects.exists()


def body_fingerprint(body: bytes) -> str:
    from django.test import RequestFactory

    from django_idempotency.core.fingerprint import request_fingerprint

    return request_fingerprint(
        RequestFactory().post("/pay/", data=body, content_type="application/json")
    )
