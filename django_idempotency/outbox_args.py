"""The one parser for outbox relay arguments: the command, the Celery task and ``relay_outbox``.

The doors take loosely typed input (command-line strings, JSON task arguments from a beat
schedule, Python values); each argument is checked here, the same way for all of them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from .conf import app_settings
from .outbox import DEFAULT_MAX_ATTEMPTS
from .purge_args import MAX_AGE, ArgumentError, parse_age, parse_alias, parse_whole_number

DEFAULT_RELAY_BATCH_SIZE = 100
#: Messages per transaction: each batch holds its rows locked while it publishes them.
MAX_RELAY_BATCH_SIZE = 10_000
#: The most failed publishes a message may have before it is parked.
MAX_RELAY_MAX_ATTEMPTS = 1000

_SECONDS = re.compile(r"\s*[0-9]{1,12}(\.[0-9]{1,9})?\s*")


class RelayArgumentError(ArgumentError):
    """A relay argument that is refused; ``option`` names it as the command spells it."""


@dataclass(frozen=True)
class RelayArgs:
    """Validated relay arguments."""

    older_than: timedelta
    batch_size: int
    database: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


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
    return parse_whole_number(
        value,
        option="--batch-size",
        default=DEFAULT_RELAY_BATCH_SIZE,
        maximum=MAX_RELAY_BATCH_SIZE,
        error=RelayArgumentError,
    )


def parse_relay_max_attempts(value: object) -> int:
    """Failed publishes after which a message is parked: 1 to :data:`MAX_RELAY_MAX_ATTEMPTS`."""
    return parse_whole_number(
        value,
        option="--max-attempts",
        default=DEFAULT_MAX_ATTEMPTS,
        maximum=MAX_RELAY_MAX_ATTEMPTS,
        error=RelayArgumentError,
    )


def parse_relay_database(value: object) -> str:
    """A configured alias; ``None`` means where the router writes outbox messages."""
    from .models import OutboxMessage

    return parse_alias(value, model=OutboxMessage, error=RelayArgumentError)


def parse_relay_args(
    *,
    older_than: object = None,
    batch_size: object = None,
    database: object = None,
    max_attempts: object = None,
) -> RelayArgs:
    """Check every argument; raise :class:`RelayArgumentError` on the first bad one."""
    return RelayArgs(
        older_than=parse_relay_older_than(older_than),
        batch_size=parse_relay_batch_size(batch_size),
        database=parse_relay_database(database),
        max_attempts=parse_relay_max_attempts(max_attempts),
    )
