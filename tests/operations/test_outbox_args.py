"""Outbox relay arguments: one parser for the command, the Celery task and ``relay_outbox()``;
a bad one publishes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from django_idempotency.arguments import (
    DEFAULT_RELAY_BATCH_SIZE,
    RelayArgumentError,
    parse_relay_args,
)
from django_idempotency.celery.beat import relay_outbox as relay_task
from django_idempotency.models import OutboxMessage

pytestmark = pytest.mark.django_db


def add_due_message() -> None:
    OutboxMessage.objects.add(task_id="t-1", name="tests.task")
    OutboxMessage.objects.update(created_at=F("created_at") - timedelta(hours=1))


BAD_ARGUMENTS: list[dict[str, Any]] = [
    {"older_than": -1},
    {"older_than": -0.5},
    {"older_than": True},
    {"older_than": float("nan")},
    {"older_than": float("inf")},
    {"older_than": 10**30},
    {"older_than": "-1"},
    {"older_than": "soon"},
    {"older_than": "999999999d"},
    {"older_than": []},
    {"older_than": timedelta(seconds=-1)},
    {"batch_size": 0},
    {"batch_size": -1},
    {"batch_size": True},
    {"batch_size": 1.5},
    {"batch_size": "many"},
    {"batch_size": 10**6},
    {"database": "nope"},
    {"database": 1},
    {"max_attempts": 0},
    {"max_attempts": True},
    {"max_attempts": "often"},
    {"max_attempts": 10**6},
]


def ids(arguments: dict[str, Any]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in arguments.items())


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS, ids=ids)
def test_the_parser_refuses(arguments: dict[str, Any]) -> None:
    (name,) = arguments
    with pytest.raises(RelayArgumentError) as refused:
        parse_relay_args(**arguments)
    assert refused.value.option == f"--{name.replace('_', '-')}"


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS, ids=ids)
def test_the_task_refuses_what_the_parser_refuses(arguments: dict[str, Any]) -> None:
    add_due_message()
    with pytest.raises(RelayArgumentError):
        relay_task(**arguments)
    assert OutboxMessage.objects.count() == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--older-than", "-1"),
        ("--older-than", "soon"),
        ("--older-than", "nan"),
        ("--batch-size", "0"),
        ("--batch-size", "many"),
        ("--database", "nope"),
        ("--max-attempts", "0"),
    ],
)
def test_the_command_refuses_with_the_option_named(option: str, value: str) -> None:
    add_due_message()
    with pytest.raises(CommandError, match=f"^{option}: "):
        call_command("idempotency_relay_outbox", option, value, stdout=StringIO())
    assert OutboxMessage.objects.count() == 1


@pytest.mark.parametrize(
    ("arguments", "older_than", "batch_size"),
    [
        ({}, timedelta(seconds=30), DEFAULT_RELAY_BATCH_SIZE),
        ({"older_than": 0, "batch_size": 1}, timedelta(0), 1),
        ({"older_than": "0", "batch_size": " 7 "}, timedelta(0), 7),
        ({"older_than": "2.5"}, timedelta(seconds=2.5), DEFAULT_RELAY_BATCH_SIZE),
        ({"older_than": "5m"}, timedelta(minutes=5), DEFAULT_RELAY_BATCH_SIZE),
        ({"older_than": timedelta(hours=1)}, timedelta(hours=1), DEFAULT_RELAY_BATCH_SIZE),
    ],
)
def test_the_parser_accepts(
    arguments: dict[str, Any], older_than: timedelta, batch_size: int
) -> None:
    parsed = parse_relay_args(**arguments)
    assert (parsed.older_than, parsed.batch_size, parsed.database) == (
        older_than,
        batch_size,
        "default",
    )


def test_max_attempts_defaults_to_five_and_takes_digits() -> None:
    assert parse_relay_args().max_attempts == 5
    assert parse_relay_args(max_attempts=" 3 ").max_attempts == 3


def test_the_default_age_is_the_setting(settings: Any) -> None:
    settings.IDEMPOTENCY_OUTBOX_RELAY_AFTER = 90
    assert parse_relay_args().older_than == timedelta(seconds=90)
