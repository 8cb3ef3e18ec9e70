"""The one parser for the arguments of the purge and of the outbox relay.

Each is run by a management command, a Celery beat task and (the relay) ``relay_outbox``, all
taking loosely typed input: command-line strings, JSON task arguments from a beat schedule,
Python values. Every argument is checked here, the same way for all of them; a value that
would widen the purge (an age of zero, ``True``, a negative number) or crash it (an age past
the calendar) is refused before anything is deleted or sent.

It imports no model, so the models may use its defaults: the database's default alias is
found through the app registry when a parser runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, connections, router

from .conf import app_settings

DEFAULT_PURGE_BATCH_SIZE = 1000
#: Ids per DELETE ... IN (...): PostgreSQL's protocol allows at most 65535 parameters.
MAX_PURGE_BATCH_SIZE = 50_000
#: Longest age accepted (100 years): anything longer purges nothing more and only risks
#: running the cutoff off the calendar.
MAX_AGE = timedelta(days=36_525)

_AGE_PART = re.compile(r"([0-9]+)\s*([smhdw])", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_SECONDS = re.compile(r"\s*[0-9]{1,12}(\.[0-9]{1,9})?\s*")


class ArgumentError(ValueError):
    """A command or task argument that is refused; ``option`` names it as the command spells
    it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class PurgeArgumentError(ArgumentError):
    """A purge argument that is refused."""


@dataclass(frozen=True)
class PurgeArgs:
    """Validated purge arguments, ready for ``IdempotencyRecord.objects.purge_expired()``."""

    batch_size: int = DEFAULT_PURGE_BATCH_SIZE
    older_than: timedelta | None = None
    scope: str | None = None
    database: str = DEFAULT_DB_ALIAS


def parse_age(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"1d12h"``, ``"90m"``, ``"30s"``, ``"2w"`` as a timedelta.

    Raises ``ValueError`` for anything else, for zero, and for more than :data:`MAX_AGE`.
    """
    compact = text.strip().replace(" ", "")
    parts = _AGE_PART.findall(compact)
    if not compact or "".join(f"{n}{u}" for n, u in parts).lower() != compact.lower():
        raise ValueError(
            f"{text!r} is not an age: use a number and a unit (s, m, h, d, w), e.g. 7d or 12h."
        )
    # Whole seconds as a Python int first: no timedelta overflow however many digits.
    seconds = sum(int(number) * _AGE_UNITS[unit.lower()] for number, unit in parts)
    return _bounded_age(seconds, text)


def _bounded_age(seconds: float, shown: object) -> timedelta:
    if seconds <= 0:
        raise ValueError(f"{shown!r} is not a positive age.")
    if seconds > MAX_AGE.total_seconds():
        raise ValueError(f"{shown!r} is longer than the longest accepted age, {MAX_AGE.days}d.")
    return timedelta(seconds=seconds)


def parse_older_than(value: object) -> timedelta | None:
    """An age string (``"7d"``) or a positive number of seconds; ``None`` means not given."""
    if value is None:
        return None
    # bool is an int: True would otherwise be a one-second age that purges every live key.
    if isinstance(value, bool):
        raise PurgeArgumentError("--older-than", f"{value!r} is not an age.")
    try:
        if isinstance(value, str):
            return parse_age(value)
        if isinstance(value, int | float):
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a positive age.")
            return _bounded_age(value, value)
    except ValueError as exc:
        raise PurgeArgumentError("--older-than", str(exc)) from None
    raise PurgeArgumentError(
        "--older-than", f"{value!r} is not an age: give a string like '7d' or seconds."
    )


def parse_batch_size(value: object) -> int:
    """Records per transaction: a whole number from 1 to :data:`MAX_PURGE_BATCH_SIZE`."""
    return parse_whole_number(
        value, option="--batch-size", default=DEFAULT_PURGE_BATCH_SIZE, maximum=MAX_PURGE_BATCH_SIZE
    )


def parse_whole_number(
    value: object,
    *,
    option: str,
    default: int,
    maximum: int,
    error: type[ArgumentError] = PurgeArgumentError,
) -> int:
    """An int or a string of digits from 1 to ``maximum``; ``None`` is ``default``. ``True``
    is refused (bool is an int), as is anything past twelve digits."""
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,12}\s*", value):
        number = int(value)
    if number is None:
        raise error(option, f"{value!r} is not a whole number.")
    if number < 1:
        raise error(option, f"must be at least 1, not {number}.")
    if number > maximum:
        raise error(option, f"must be at most {maximum}, not {number}.")
    return number


def parse_scope(value: object) -> str | None:
    """A scope prefix; ``None`` purges every scope, an empty one is refused as a likely slip."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PurgeArgumentError("--scope", "give a non-empty prefix, or leave the option out.")
    if "\x00" in value:
        raise PurgeArgumentError("--scope", "a prefix cannot contain a NUL character.")
    return value


def parse_database(value: object) -> str:
    """A configured alias; ``None`` means where the router writes records."""
    return parse_alias(value, model="IdempotencyRecord")


def parse_alias(
    value: object, *, model: str, error: type[ArgumentError] = PurgeArgumentError
) -> str:
    """A configured database alias; ``None`` or ``""`` means where the router writes
    ``model`` (a model name of this app)."""
    if value is None or value == "":
        written = apps.get_model("django_idempotency", model)
        return router.db_for_write(written) or DEFAULT_DB_ALIAS
    if not isinstance(value, str) or value not in connections:
        raise error(
            "--database",
            f"unknown database {value!r}; configured: {', '.join(connections)}.",
        )
    return value


def parse_purge_args(
    *,
    batch_size: object = None,
    older_than: object = None,
    scope: object = None,
    database: object = None,
) -> PurgeArgs:
    """Check every argument; raise :class:`PurgeArgumentError` on the first bad one."""
    return PurgeArgs(
        batch_size=parse_batch_size(batch_size),
        older_than=parse_older_than(older_than),
        scope=parse_scope(scope),
        database=parse_database(database),
    )


# -- the outbox relay ----------------------------------------------------------------------

DEFAULT_RELAY_BATCH_SIZE = 100
#: Failed publishes after which a message is parked: the relay leaves it alone from then on.
DEFAULT_MAX_ATTEMPTS = 5
#: Messages per transaction: each batch holds its rows locked while it publishes them.
MAX_RELAY_BATCH_SIZE = 10_000
#: The most failed publishes a message may have before it is parked.
MAX_RELAY_MAX_ATTEMPTS = 1000


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
    return parse_alias(value, model="OutboxMessage", error=RelayArgumentError)


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
