"""The outbox's query logic, without Celery: writing, age by the right clock, sending in
batches, on the alias the messages live on."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from django.db.models import F

from django_idempotency.models import OutboxMessage
from django_idempotency.models.outbox import OutboxSendError, OutboxUnavailable, json_only

pytestmark = pytest.mark.django_db


def add(task_id: str, **fields: Any) -> OutboxMessage:
    return OutboxMessage.objects.add(task_id=task_id, name="tests.task", **fields)


def age(seconds: float) -> None:
    """Make every message ``seconds`` older (by whatever clock dated it)."""
    OutboxMessage.objects.update(created_at=F("created_at") - timedelta(seconds=seconds))


def test_a_message_keeps_its_json() -> None:
    add("t-1", args=(1, "two", [3.5, None]), kwargs={"k": {"n": True}}, options={"queue": "q"})
    message = OutboxMessage.objects.get()
    assert (message.args, message.kwargs, message.options) == (
        [1, "two", [3.5, None]],
        {"k": {"n": True}},
        {"queue": "q"},
    )
    assert str(message) == "tests.task[t-1]"


class Text(str):
    pass


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"eta": datetime(2030, 1, 1)}, "options['eta']"),
        ({"link": type("Signature", (dict,), {})(task="x")}, "options['link']"),
        ({"queue": Text("q")}, "options['queue']"),
        ({"priority": float("nan")}, "options['priority']"),
        ({1: "one"}, "options has the key 1"),
        ({"nested": [1, {2}]}, "options['nested'][1]"),
    ],
)
def test_what_is_not_plain_json_is_refused_by_name(value: dict[Any, Any], named: str) -> None:
    with pytest.raises(TypeError, match=re.escape(named)):
        add("t-1", options=value)
    assert not OutboxMessage.objects.exists()


def test_json_only_turns_tuples_into_lists() -> None:
    assert json_only((1, (2, 3)), "args") == [1, [2, 3]]


def test_a_task_id_is_written_once() -> None:
    add("t-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        add("t-1")


def test_only_messages_older_than_the_age_are_due() -> None:
    add("old")
    age(60)
    add("new")
    due = OutboxMessage.objects.due(timedelta(seconds=30))
    assert list(due.values_list("task_id", flat=True)) == ["old"]
    everything = OutboxMessage.objects.due(timedelta(0))
    assert sorted(everything.values_list("task_id", flat=True)) == ["new", "old"]


@pytest.mark.concurrent_db
def test_on_a_server_database_its_clock_dates_and_judges() -> None:
    add("t-1")
    mysql = connections["default"].vendor == "mysql"
    clock = "UTC_TIMESTAMP(6)" if mysql else "STATEMENT_TIMESTAMP()"
    with connections["default"].cursor() as cursor:
        cursor.execute(f"SELECT {clock}")
        (database_now,) = cursor.fetchone()
    if mysql:
        database_now = database_now.replace(tzinfo=timezone.utc)
    written = OutboxMessage.objects.get().created_at
    assert abs((database_now - written).total_seconds()) < 5
    # Judged by that clock: due once the database says it is old enough, whatever ours says.
    assert clock in str(OutboxMessage.objects.due(timedelta(1)).query)


def test_send_each_sends_in_order_in_batches_and_deletes() -> None:
    for index in range(7):
        add(f"t-{index}")
    sent: list[str] = []

    def send(message: OutboxMessage) -> None:
        sent.append(message.task_id)

    assert OutboxMessage.objects.all().send_each(send, batch_size=3).sent == 7
    assert sent == [f"t-{index}" for index in range(7)]
    assert not OutboxMessage.objects.exists()


def test_an_unavailable_broker_stops_keeps_the_rest_and_deletes_what_was_sent() -> None:
    for index in range(5):
        add(f"t-{index}")

    def send(message: OutboxMessage) -> None:
        if message.task_id == "t-3":
            raise OutboxUnavailable("broker down") from ConnectionError("refused")

    with pytest.raises(OutboxSendError) as failed:
        OutboxMessage.objects.all().send_each(send, batch_size=2)
    assert failed.value.sent == 3
    assert failed.value.task_id == "t-3"
    assert isinstance(failed.value.__cause__, ConnectionError)
    assert "'t-3'" in str(failed.value)
    assert "refused" in str(failed.value)
    # No fault of the message's: nothing counted against it.
    assert list(OutboxMessage.objects.order_by("pk").values_list("task_id", "attempts")) == [
        ("t-3", 0),
        ("t-4", 0),
    ]


def test_a_message_that_fails_on_its_own_is_set_aside_and_the_rest_are_sent() -> None:
    for index in range(5):
        add(f"t-{index}")
    sent: list[str] = []

    def send(message: OutboxMessage) -> None:
        if message.task_id == "t-1":
            raise ValueError("no such exchange \x00 here")
        sent.append(message.task_id)

    for attempt in (1, 2):
        result = OutboxMessage.objects.all().send_each(send, batch_size=2, max_attempts=3)
        (aside,) = result.set_aside
        assert (aside.task_id, aside.attempts, aside.parked) == ("t-1", attempt, False)
        message = OutboxMessage.objects.get()
        assert (message.task_id, message.attempts, message.parked_at) == ("t-1", attempt, None)
    assert result.sent == 0
    assert sent == ["t-0", "t-2", "t-3", "t-4"]
    # A NUL would not fit a PostgreSQL text column.
    assert message.last_error == "ValueError: no such exchange \\x00 here"
    assert message.last_attempt_at is not None

    third = OutboxMessage.objects.all().send_each(send, batch_size=2, max_attempts=3)
    assert third.set_aside[0].parked
    assert list(OutboxMessage.objects.parked().values_list("task_id", flat=True)) == ["t-1"]
    # Parked: not tried again, until unparked.
    assert OutboxMessage.objects.all().send_each(send, batch_size=2, max_attempts=3).set_aside == ()
    assert OutboxMessage.objects.parked().unpark() == 1
    assert OutboxMessage.objects.all().send_each(lambda m: None, batch_size=2).sent == 1
    assert not OutboxMessage.objects.exists()


def test_a_long_error_is_cut() -> None:
    add("t-1")

    def send(message: OutboxMessage) -> None:
        raise ValueError("x" * 10_000)

    OutboxMessage.objects.all().send_each(send, batch_size=1)
    assert len(OutboxMessage.objects.get().last_error) == 2000


def test_send_each_needs_a_positive_batch_size_and_attempts() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        OutboxMessage.objects.all().send_each(lambda message: None, batch_size=0)
    with pytest.raises(ValueError, match="max_attempts"):
        OutboxMessage.objects.all().send_each(lambda message: None, batch_size=1, max_attempts=0)


@pytest.mark.django_db(databases=["default", "other"])
def test_messages_live_on_the_alias_they_were_written_to() -> None:
    OutboxMessage.objects.using("other").add(task_id="t-1", name="tests.task")
    assert not OutboxMessage.objects.using("default").exists()
    assert OutboxMessage.objects.using("other").due(timedelta(0)).count() == 1
    assert OutboxMessage.objects.using("other").send_each(lambda m: None, batch_size=10).sent == 1
    assert not OutboxMessage.objects.using("other").exists()
