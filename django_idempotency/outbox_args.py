"""The one parser for outbox relay arguments: the command, the Celery task and ``relay_outbox``.

The doors take loosely typed input (command-line strings, JSON task arguments from a beat
schedule, Python values); each argument is checked here, the same way for all of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, connections, router

from .conf import app_settings
from .purge_args import MAX_AGE, parse_age

DEFAULT_RELAY_BATCH_SIZE = 100
#: Messages per transaction: each batch holds its rows locked while it publishes them.
MAX_RELAY_BATCH_SIZE = 10_000

_SECONDS = re.compile(r"\s*[0-9]{1,12}(\.[0-9]{1,9})?\s*")


class RelayArgumentError(ValueError):
    """A relay argument that is refused; ``option`` names it as the command spells it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


@dataclass(frozen=True)
class RelayArgs:
    """Validated relay arguments."""

    older_than: timedelta
    batch_size: int
    database: str


def parse_relay_older_than(value: object) -> timedelta:
    """Seconds (a number, or a string of digits), an age like ``"5m"``, or a timedelta; zero
    sends every committed message. ``None`` is ``IDEMPOTENCY_OUTBOX_RELAY_AFTER``."""
    option = "--older-than"
    if value is None:
        return app_settings.OUTBOX_RELAY_AFTER
    # bool is an int: True would quietly mean one second.
    if isinstance(value, bool):
        raise RelayArgumentError(option, f"{value!r} is not a number of seconds.")
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str) and _SECONDS.fullmatch(value):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            return parse_age(value)
        except ValueError as exc:
            raise RelayArgumentError(option, str(exc)) from None
    else:
        raise RelayArgumentError(option, f"{value!r} is not a number of seconds.")
    if not math.isfinite(seconds) or seconds < 0:
        raise RelayArgumentError(option, f"{value!r} is not zero or a positive number of seconds.")
    if seconds > MAX_AGE.total_seconds():
        raise RelayArgumentError(option, f"{value!r} is longer than {MAX_AGE.days} days.")
    return timedelta(seconds=seconds)


def parse_relay_batch_size(value: object) -> int:
    """Messages per transaction: a whole number from 1 to :data:`MAX_RELAY_BATCH_SIZE`."""
    option = "--batch-size"
    if value is None:
        return DEFAULT_RELAY_BATCH_SIZE
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,12}\s*", value):
        number = int(value)
    if number is None:
        raise RelayArgumentError(option, f"{value!r} is not a whole number.")
    if not 1 <= number <= MAX_RELAY_BATCH_SIZE:
        raise RelayArgumentError(option, f"must be from 1 to {MAX_RELAY_BATCH_SIZE}, not {number}.")
    return number


def parse_relay_database(value: object) -> str:
    """A configured alias; ``None`` means where the router writes outbox messages."""
    from .models import OutboxMessage

    if value is None or value == "":
        return router.db_for_write(OutboxMessage) or DEFAULT_DB_ALIAS
    if not isinstance(value, str) or value not in connections:
        raise RelayArgumentError(
            "--database", f"unknown database {value!r}; configured: {', '.join(connections)}."
        )
    return value


def parse_relay_args(
    *, older_than: object = None, batch_size: object = None, database: object = None
) -> RelayArgs:
    """Check every argument; raise :class:`RelayArgumentError` on the first bad one."""
    return RelayArgs(
        older_than=parse_relay_older_than(older_than),
        batch_size=parse_relay_batch_size(batch_size),
        database=parse_relay_database(database),
    )
