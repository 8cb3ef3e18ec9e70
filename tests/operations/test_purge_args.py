"""Purge arguments: one parser for the command and the Celery task; a bad one deletes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_idempotency.arguments import (
    DEFAULT_PURGE_BATCH_SIZE,
    MAX_AGE,
    PurgeArgumentError,
    parse_age,
    parse_purge_args,
)
from django_idempotency.celery.beat import purge_expired
from django_idempotency.models import IdempotencyRecord
from tests.operations.test_purge import records

pytestmark = pytest.mark.django_db

# Each would widen the purge to every live record, crash it, or quietly mean something else.
BAD_ARGUMENTS: list[dict[str, Any]] = [
    {"older_than": 0},
    {"older_than": 0.0},
    {"older_than": -1},
    {"older_than": -0.5},
    {"older_than": True},
    {"older_than": False},
    {"older_than": float("nan")},
    {"older_than": float("inf")},
    {"older_than": 10**30},
    {"older_than": "0d"},
    {"older_than": "-1d"},
    {"older_than": "999999999d"},
    {"older_than": "99999999999d"},
    {"older_than": "200000w"},
    {"older_than": "9" * 400 + "s"},
    {"older_than": "7"},
    {"older_than": "\u00b2d"},
    {"older_than": []},
    {"batch_size": 0},
    {"batch_size": -1},
    {"batch_size": True},
    {"batch_size": 1.5},
    {"batch_size": "many"},
    {"batch_size": 10**9},
    {"scope": ""},
    {"scope": "  "},
    {"scope": "a\x00b"},
    {"scope": 7},
    {"database": "nope"},
    {"database": 1},
]


def ids(arguments: dict[str, Any]) -> str:
    return ",".join(f"{name}={value!r}"[:40] for name, value in arguments.items())


@pytest.fixture
def live_and_expired() -> None:
    records(3, expired=False)
    records(2, expired=True)


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS, ids=ids)
def test_the_task_refuses_and_deletes_nothing(live_and_expired: None, arguments: Any) -> None:
    with pytest.raises(PurgeArgumentError):
        purge_expired(**arguments)
    assert IdempotencyRecord.objects.count() == 5


@pytest.mark.parametrize(
    "arguments", [a for a in BAD_ARGUMENTS if all(isinstance(v, str) for v in a.values())], ids=ids
)
def test_the_command_refuses_the_same_strings_with_the_same_message(
    live_and_expired: None, arguments: dict[str, str]
) -> None:
    argv = [f"--{name.replace('_', '-')}={value}" for name, value in arguments.items()]
    with pytest.raises(PurgeArgumentError) as parsed:
        parse_purge_args(**arguments)
    with pytest.raises(CommandError) as raised:
        call_command("idempotency_purge", *argv, stdout=StringIO())
    assert str(raised.value) == str(parsed.value)
    assert IdempotencyRecord.objects.count() == 5


@pytest.mark.parametrize("age", ["999999999d", "99999999999d", "200000w"])
def test_an_age_past_the_calendar_is_a_command_error_not_an_overflow(
    live_and_expired: None, age: str
) -> None:
    with pytest.raises(CommandError, match="longer than the longest accepted age"):
        call_command("idempotency_purge", "--older-than", age, stdout=StringIO())
    assert IdempotencyRecord.objects.count() == 5


def test_the_task_with_good_arguments_purges_only_what_expired(live_and_expired: None) -> None:
    result = purge_expired(older_than="1h", batch_size="1")
    assert result["deleted"] == 2
    assert IdempotencyRecord.objects.count() == 3
    # None means "not given": the default batch size, the router's database.
    assert parse_purge_args().batch_size == DEFAULT_PURGE_BATCH_SIZE


def test_ages_up_to_the_limit_are_accepted() -> None:
    assert parse_age(f"{MAX_AGE.days}d") == MAX_AGE
    assert parse_purge_args(older_than=3600).older_than == timedelta(hours=1)
    assert parse_purge_args(older_than=1.5).older_than == timedelta(seconds=1.5)
