"""An observer that fails is logged and ignored: it never turns an answer into another (a stored
success into a 500, a refusal into a 500, a view's error into its own), never undoes a stored
response, never swallows a view's exception, and never stops a purge or a relay pass."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_idempotency.exceptions import KeyMismatch
from django_idempotency.models import IdempotencyRecord
from django_idempotency.once import perform
from django_idempotency.signals import response_stored
from tests.conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)


class ObserverDown(Exception):
    """What a broken observer raises."""


class Raising:
    """Every method raises, the span on the way in."""

    def span(self, name: str, labels: Any) -> Any:
        raise ObserverDown(name)

    def outcome(self, name: str, labels: Any) -> None:
        raise ObserverDown(name)

    def waited(self, labels: Any, seconds: float) -> None:
        raise ObserverDown("waited")

    def backlog(self, database: str, values: Mapping[str, float]) -> None:
        raise ObserverDown("backlog")


class RaisingOnExit(Raising):
    """A span that starts, then raises when it ends."""

    @contextmanager
    def span(self, name: str, labels: Any) -> Iterator[None]:
        yield
        raise ObserverDown(name)


class Swallowing(Raising):
    """A span that swallows whatever the phase raised (a context manager's ``return True``)."""

    @contextmanager
    def span(self, name: str, labels: Any) -> Iterator[None]:
        with suppress(Exception):
            yield


class Unbuildable(Raising):
    def __init__(self) -> None:
        raise ObserverDown("cannot start")


BROKEN = [f"{__name__}.{cls.__name__}" for cls in (Raising, RaisingOnExit, Swallowing)]


def charge(amount: int, key: str, *, fail: bool = False) -> Any:
    def run() -> dict[str, int]:
        if fail:
            raise ValueError("the gateway said no")
        return {"amount": amount}

    return perform(run, scope="shop.charge", key=key, fingerprint=f"amount={amount}")


@pytest.mark.parametrize("observer", [*BROKEN, f"{__name__}.Unbuildable"])
def test_a_failing_observer_changes_no_answer_and_is_logged(
    observer: str, caplog: pytest.LogCaptureFixture
) -> None:
    stored: list[str] = []

    def on_stored(**kwargs: Any) -> None:
        stored.append(kwargs["operation"].key)

    response_stored.connect(on_stored)
    try:
        with override_settings(IDEMPOTENCY_METRICS=[observer]), caplog.at_level(logging.ERROR):
            first = charge(10, "k1")
            again = charge(10, "k1")
            with pytest.raises(KeyMismatch):
                charge(99, "k1")
            with pytest.raises(ValueError, match="the gateway said no"):
                charge(10, "k2", fail=True)
            after_commit: list[int] = []
            with transaction.atomic():  # a caller's hooks after the stored count still run
                charge(10, "k3")
                transaction.on_commit(lambda: after_commit.append(1))
    finally:
        response_stored.disconnect(on_stored)

    assert first.result == again.result == {"amount": 10}
    assert again.replayed
    assert stored == ["k1", "k3"]
    assert after_commit == [1]
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"k1", "k3"}
    assert any("observer" in record.getMessage() for record in caplog.records)


@pytest.mark.drf
@pytest.mark.parametrize("observer", BROKEN)
def test_a_failing_observer_turns_no_http_answer_into_a_500(observer: str, user: Any) -> None:
    client = client_for(user)

    def post(label: str, **extra: Any) -> int:
        body = {"label": label, **extra}
        response = client.post("/test/probe/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
        return int(response.status_code)

    with override_settings(IDEMPOTENCY_METRICS=[observer]):
        assert [post("a"), post("a"), post("b")] == [201, 201, 422]
        response = client.post(
            "/test/probe/",
            {"label": "x", "raise": "validation"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="other",
        )
        assert response.status_code == 400


@pytest.mark.parametrize("observer", BROKEN)
def test_a_failing_observer_stops_no_purge(observer: str) -> None:
    with override_settings(IDEMPOTENCY_METRICS=[observer]):
        result = IdempotencyRecord.objects.purge_expired()
    assert result.deleted == 0
