"""The app's settings, read from Django settings on every access so override_settings works."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings

#: Statuses that mean "nothing happened, fix and retry": the key is released and the
#: transaction, the view's own writes included, is rolled back. Every 5xx is released too.
DEFAULT_RELEASE_STATUS_CODES: tuple[int, ...] = (
    400,
    401,
    403,
    404,
    405,
    408,
    409,
    413,
    415,
    422,
    429,
)

#: Response headers worth replaying. Set-Cookie and Date are never stored, whatever this says.
DEFAULT_REPLAY_HEADERS: tuple[str, ...] = (
    "Content-Type",
    "Content-Language",
    "Content-Disposition",
    "Location",
    "ETag",
    "Last-Modified",
    "Link",
)

NEVER_STORED_HEADERS = frozenset({"set-cookie", "date"})


class Settings:
    """Typed access to the ``IDEMPOTENCY_*`` settings, each with a documented default."""

    @property
    def HEADER(self) -> str:
        """Name of the request header that carries the key."""
        return str(getattr(settings, "IDEMPOTENCY_HEADER", "Idempotency-Key"))

    @property
    def TTL(self) -> timedelta:
        """How long a stored response is replayed (a timedelta or seconds). Default 24 hours."""
        return as_timedelta(getattr(settings, "IDEMPOTENCY_TTL", timedelta(hours=24)))

    @property
    def LOCK_TIMEOUT(self) -> float:
        """Seconds a copy waits for the original to finish before it gets a 409. Default 5."""
        return float(getattr(settings, "IDEMPOTENCY_LOCK_TIMEOUT", 5.0))

    @property
    def RETRY_AFTER(self) -> int:
        """Seconds advertised in Retry-After when the original is still running. Default 1."""
        return int(getattr(settings, "IDEMPOTENCY_RETRY_AFTER", 1))

    @property
    def MISMATCH_STATUS(self) -> int:
        """Status for a key reused with another payload: 422 (IETF draft) or 409."""
        return int(getattr(settings, "IDEMPOTENCY_MISMATCH_STATUS", 422))

    @property
    def RELEASE_STATUS_CODES(self) -> frozenset[int]:
        """Statuses (besides every 5xx) that release the key instead of storing the response."""
        codes: Sequence[int] = getattr(
            settings, "IDEMPOTENCY_RELEASE_STATUS_CODES", DEFAULT_RELEASE_STATUS_CODES
        )
        return frozenset(int(code) for code in codes)

    @property
    def REPLAY_HEADERS(self) -> tuple[str, ...]:
        """Response headers stored and replayed with the body."""
        names: Sequence[str] = getattr(
            settings, "IDEMPOTENCY_REPLAY_HEADERS", DEFAULT_REPLAY_HEADERS
        )
        return tuple(name for name in names if name.lower() not in NEVER_STORED_HEADERS)

    @property
    def MAX_STORED_BODY_SIZE(self) -> int:
        """Largest response body (bytes) that is stored; a larger one is refused. Default 1 MiB."""
        return int(getattr(settings, "IDEMPOTENCY_MAX_STORED_BODY_SIZE", 1024 * 1024))

    @property
    def PROBLEM_TYPE_BASE(self) -> str:
        """Prefix of the ``type`` URI of every problem+json answer; the problem's code follows."""
        return str(
            getattr(
                settings,
                "IDEMPOTENCY_PROBLEM_TYPE_BASE",
                "https://django-idempotency.readthedocs.io/en/latest/problems.html#",
            )
        )

    @property
    def RECORD_EVENTS(self) -> bool:
        """Whether every replay and refusal is written to the event log. Default True."""
        return bool(getattr(settings, "IDEMPOTENCY_RECORD_EVENTS", True))

    @property
    def ISSUED_KEY_MAX_AGE(self) -> timedelta:
        """How long a server-issued key is accepted (a timedelta or seconds). Default 24 hours.

        A request under an issued key is stored for at least this long, whatever its TTL, so a
        key can never outlive the record that makes its retry a replay.
        """
        value = getattr(settings, "IDEMPOTENCY_ISSUED_KEY_MAX_AGE", timedelta(hours=24))
        return as_timedelta(value)

    @property
    def ISSUED_KEY_FIELD(self) -> str:
        """Name of the form field that carries an issued key. Default ``idempotency_key``."""
        return str(getattr(settings, "IDEMPOTENCY_ISSUED_KEY_FIELD", "idempotency_key"))


def as_timedelta(value: timedelta | int | float) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


app_settings = Settings()
