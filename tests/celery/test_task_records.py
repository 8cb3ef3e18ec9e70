"""What an ``IdempotentTask`` stores, run eagerly (``apply()``) on a real database: how long its
record lives (the broker's redelivery window plus the TTL), the references it holds, and the
arguments it fingerprints."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from celery import Celery
from django.utils import timezone

from django_idempotency.celery.tasks import (
    IdempotentTask,
    configuration_problems,
    redelivery_window,
)
from django_idempotency.core.references import storable
from django_idempotency.exceptions import InvalidKey
from django_idempotency.models import IdempotencyRecord, TaskDelivery
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def app_with(broker: str, **options: Any) -> Celery:
    app = Celery("records", broker=broker, set_as_current=False)
    app.conf.broker_transport_options = options

    @app.task(  # type: ignore[untyped-decorator]
        base=IdempotentTask, name="records.ship", shared=False, bind=True
    )
    def ship(self: IdempotentTask, label: str, reference: str | None = None) -> int:
        return Execution.objects.create(label=label).pk

    ship.get_idempotency_reference = lambda args, kwargs: kwargs.get("reference")
    return app


def test_a_task_record_outlives_the_brokers_redelivery_window() -> None:
    # A Redis message unacknowledged for visibility_timeout comes back: the record must still
    # answer it then, and for the TTL after.
    app = app_with("redis://127.0.0.1:6379/0", visibility_timeout=7200)
    before = timezone.now()

    assert app.tasks["records.ship"].apply(args=["late"]).successful()

    record = IdempotencyRecord.objects.get()
    lifetime = record.expires_at - before
    assert timedelta(hours=26) <= lifetime < timedelta(hours=26, minutes=1)
    assert redelivery_window(app) == timedelta(hours=2)
    assert redelivery_window(app_with("amqp://guest@127.0.0.1//")) == timedelta(0)
    assert not TaskDelivery.objects.exists()  # a delivery that finished leaves no count


def test_the_worker_check_names_limits_and_countdowns_that_cannot_work() -> None:
    app = app_with("redis://127.0.0.1:6379/0", visibility_timeout=60)
    task = app.tasks["records.ship"]
    task.idempotency_max_deliveries = 0

    problems = configuration_problems(app)

    assert any("records.ship: the delivery limit is 0" in p for p in problems), problems
    assert any("records.ship: a retry countdown of 300 s" in p for p in problems), problems


@pytest.mark.concurrent_db
def test_task_references_longer_than_a_column_are_held_whole() -> None:
    app = app_with("memory://")
    stem = "order:" + "9" * 300
    first = app.tasks["records.ship"].apply(args=["a"], kwargs={"reference": stem + "1"})
    second = app.tasks["records.ship"].apply(args=["b"], kwargs={"reference": stem + "2"})

    assert first.successful()
    assert second.successful()
    assert set(IdempotencyRecord.objects.values_list("reference", flat=True)) == {
        storable(stem + "1"),
        storable(stem + "2"),
    }


def test_a_key_that_cannot_be_stored_fails_the_task_once() -> None:
    app = app_with("memory://")
    task = app.tasks["records.ship"]
    task.get_idempotency_key = lambda args, kwargs: "k" * 256

    result = task.apply(args=["long"])

    assert result.failed()
    assert isinstance(result.result, InvalidKey)
    assert not Execution.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_the_old_names_of_the_tasks_options_still_work_with_a_warning() -> None:
    """``idempotency_wait`` and the hooks ``idempotency_key``/``idempotency_reference`` became
    ``idempotency_lock_timeout``, ``get_idempotency_key`` and ``get_idempotency_reference``."""
    app = Celery("legacy", broker="memory://", set_as_current=False)
    with pytest.warns(DeprecationWarning, match="is deprecated: use") as caught:

        class LegacyTask(IdempotentTask):  # type: ignore[misc]
            idempotency_wait = 0.25

            def idempotency_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
                return f"legacy:{args[0]}"

            def idempotency_reference(self, args: Any, kwargs: Any) -> str | None:
                return f"order:{args[0]}"

    assert sorted(str(w.message).split(" is ")[0].split(".")[-1] for w in caught) == [
        "idempotency_key",
        "idempotency_reference",
        "idempotency_wait",
    ]

    @app.task(base=LegacyTask, name="legacy.ship", shared=False)  # type: ignore[untyped-decorator]
    def ship(order: int) -> int:
        return Execution.objects.create(label=f"ship {order}").pk

    assert ship.apply(args=[7]).successful()
    assert ship.get_idempotency_lock_timeout() == 0.25
    record = IdempotencyRecord.objects.get()
    assert (record.key, record.reference) == ("legacy:7", "order:7")


def test_a_tasks_lock_timeout_defaults_to_the_setting_every_door_uses(settings: Any) -> None:
    settings.IDEMPOTENCY_LOCK_TIMEOUT = 1.5
    task = app_with("memory://").tasks["records.ship"]
    assert task.get_idempotency_lock_timeout() == 1.5
    task.idempotency_lock_timeout = 0.2
    assert task.get_idempotency_lock_timeout() == 0.2


@pytest.mark.concurrent_db
def test_arguments_kombus_json_carries_are_fingerprinted_as_it_carries_them() -> None:
    app = app_with("memory://")

    @app.task(  # type: ignore[untyped-decorator]
        base=IdempotentTask, name="records.pay", shared=False
    )
    def pay(amount: Decimal, at: datetime, day: date, order: UUID) -> str:
        return str(Execution.objects.create(label=f"pay:{order}:{amount}").pk)

    order = UUID("12345678-1234-5678-1234-567812345678")
    args = [Decimal("10.50"), datetime(2026, 1, 2, tzinfo=dt_timezone.utc), date(2026, 1, 2), order]
    first = pay.apply(args=args, task_id="pay-1")
    again = pay.apply(args=args, task_id="pay-1")
    other = pay.apply(args=[Decimal("10.5"), *args[1:]], task_id="pay-1")

    assert first.successful(), first.result
    assert again.result == first.result
    assert type(other.result).__name__ == "KeyMismatch"
    assert Execution.objects.filter(label__startswith="pay:").count() == 1
