"""The app's settings, read from Django settings on every access so override_settings works."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings

#: Statuses that mean "nothing happened, fix and retry": the key is released and the
#: transaction, the view's own writes included, is rolled back. Every 5xx is released too.
#: Extend it rather than copy it: in settings
#: ``IDEMPOTENCY_RELEASE_STATUS_CODES = {*DEFAULT_RELEASE_STATUS_CODES, 406}``, or per view
#: ``idempotency_extra_release_status_codes = {406}``.
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

#: The metrics and traces built in, by their name in ``IDEMPOTENCY_METRICS``: the observer
#: class of each and the module its extra installs.
METRICS_EXPORTERS: dict[str, tuple[str, str]] = {
    "prometheus": (
        "django_idempotency.metrics.prometheus.PrometheusObserver",
        "prometheus_client",
    ),
    "opentelemetry": (
        "django_idempotency.metrics.opentelemetry.OpenTelemetryObserver",
        "opentelemetry.metrics",
    ),
}

#: The values of ``IDEMPOTENCY_PRINCIPAL`` and of every door's ``principal`` option.
PRINCIPALS: tuple[str, ...] = ("user", "session")

#: Statuses whose answer holds its business reference: every success.
DEFAULT_REFERENCE_STATUS_CODES: tuple[int, ...] = tuple(range(200, 300))

#: Response headers never stored or replayed, whatever the settings say: hop-by-hop headers
#: (they describe one connection), the ones the server sets for each response, and the ones
#: that carry credentials or secrets of one client or session.
NEVER_STORED_HEADERS = frozenset(
    {
        # hop-by-hop (RFC 9110 7.6.1) and framing
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        # set afresh for every response
        "date",
        "server",
        "idempotent-replayed",
        # credentials and per-client secrets
        "set-cookie",
        "set-cookie2",
        "authorization",
        "proxy-authorization",
        "proxy-authenticate",
        "authentication-info",
        "proxy-authentication-info",
    }
)
#: Any header whose name contains one of these carries a CSRF token or a session secret.
NEVER_STORED_NAME_PARTS: tuple[str, ...] = ("csrf", "xsrf", "session", "cookie", "token")


def is_never_stored(name: str) -> bool:
    """Whether a response header is left out of the stored response (see the README)."""
    lowered = name.lower()
    return (
        lowered in NEVER_STORED_HEADERS
        or any(part in lowered for part in NEVER_STORED_NAME_PARTS)
        or lowered in {extra.lower() for extra in app_settings.NEVER_REPLAYED_HEADERS}
    )


def _default_max_stored_body_size() -> int:
    """Twice the largest request body Django accepts plus 1 MiB: an echo always fits."""
    upload_limit = getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", 2621440) or 2621440
    return 2 * int(upload_limit) + 1024 * 1024


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
    def REFERENCE_TTL(self) -> timedelta | None:
        """How long a success holds its business reference (a timedelta or seconds).

        Default ``None``: for as long as the record's row exists. The purge keeps such rows and
        strips their stored response after ``TTL``; a value bounds that storage. A reference is
        always held at least as long as the response is replayable.
        """
        value = getattr(settings, "IDEMPOTENCY_REFERENCE_TTL", None)
        return None if value is None else as_timedelta(value)

    @property
    def KEY_REQUIRED(self) -> bool:
        """Whether an unsafe request without a key is refused (400) on every door. Default True.

        ``False``: keys are optional project-wide (a request without one runs as usual); a view's
        ``idempotency_key_required`` (decorator: ``key_required``) overrides it.
        """
        return bool(getattr(settings, "IDEMPOTENCY_KEY_REQUIRED", True))

    @property
    def PRINCIPAL(self) -> str:
        """Whose keys these are on every door: ``"user"`` (default) or ``"session"``.

        ``"user"``: authenticated users only, a guest's keyed request is a 403. ``"session"``:
        guests too, each by its own session (started on its first keyed request when it has
        none). A view's ``idempotency_principal`` (decorator: ``principal``) overrides it.
        """
        value = getattr(settings, "IDEMPOTENCY_PRINCIPAL", "user")
        if value not in PRINCIPALS:
            raise ValueError(f"IDEMPOTENCY_PRINCIPAL must be one of {PRINCIPALS}, not {value!r}")
        return str(value)

    @property
    def LOCK_TIMEOUT(self) -> float:
        """Seconds a copy waits for the original to finish before it gets a 409. Default 5.

        The default of every door's ``lock_timeout``: a view's ``idempotency_lock_timeout``
        (decorator: ``lock_timeout``), an ``IdempotentTask``'s ``idempotency_lock_timeout``
        (a copy then retries later), ``once``'s and ``run_once``'s ``lock_timeout``.
        """
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
    def REFERENCE_STATUS_CODES(self) -> frozenset[int]:
        """Statuses whose stored answer completes the operation for its business reference,
        which the answer then holds. Default: every 2xx.

        Leave out a success that is only a step (a payment gateway's redirect, ``202``): the
        reference is then free for the request that completes it.
        """
        codes: Sequence[int] = getattr(
            settings, "IDEMPOTENCY_REFERENCE_STATUS_CODES", DEFAULT_REFERENCE_STATUS_CODES
        )
        return frozenset(int(code) for code in codes)

    @property
    def NEVER_REPLAYED_HEADERS(self) -> tuple[str, ...]:
        """More response headers never stored, added to the built-in deny-list. Default none."""
        names: Sequence[str] = getattr(settings, "IDEMPOTENCY_NEVER_REPLAYED_HEADERS", ())
        return tuple(str(name) for name in names)

    @property
    def MAX_STORED_BODY_SIZE(self) -> int:
        """Largest response body (bytes) stored whole; a larger success is stored as a problem
        pointing to its resource. Default ``2 * DATA_UPLOAD_MAX_MEMORY_SIZE + 1 MiB`` (6 MiB)."""
        size = getattr(settings, "IDEMPOTENCY_MAX_STORED_BODY_SIZE", None)
        return _default_max_stored_body_size() if size is None else int(size)

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
    def MAX_EVENTS_PER_RECORD(self) -> int:
        """How many visits to one record the event log keeps: the first ones. Default 20.

        Later replays and refusals of that record only move its counters, so a client that
        repeats a request without end cannot grow the log without end. ``0``: no event is
        logged for a record (an in-flight refusal, which has no record yet, still is).
        """
        return int(getattr(settings, "IDEMPOTENCY_MAX_EVENTS_PER_RECORD", 20))

    @property
    def DERIVED_KEY_SECRET(self) -> str:
        """Secret of the HMAC behind derived keys; default ``SECRET_KEY``. Changing it changes
        every derived key, so a retry after the change is a new call to the downstream API."""
        return str(getattr(settings, "IDEMPOTENCY_DERIVED_KEY_SECRET", None) or settings.SECRET_KEY)

    @property
    def ISSUED_KEY_MAX_AGE(self) -> timedelta:
        """How long a server-issued key may start an operation (a timedelta or seconds), never
        longer than ``IDEMPOTENCY_TTL``. Default 24 hours.

        The age limits only what a key starts: a retry of an operation the key started replays,
        whatever its age. It is judged by the database's clock on PostgreSQL (the app's on
        SQLite) against the key's stamp from the issuing server. A request under an issued key
        is stored for at least this long, whatever its TTL, so a key can never outlive the
        record that makes its retry a replay.
        """
        value = getattr(settings, "IDEMPOTENCY_ISSUED_KEY_MAX_AGE", timedelta(hours=24))
        return as_timedelta(value)

    @property
    def ISSUED_KEY_FIELD(self) -> str:
        """Name of the form field that carries an issued key. Default ``idempotency_key``."""
        return str(getattr(settings, "IDEMPOTENCY_ISSUED_KEY_FIELD", "idempotency_key"))

    @property
    def OUTBOX_RELAY_AFTER(self) -> timedelta:
        """Age (a timedelta or seconds) at which the outbox relay sends a message. Default 30 s.

        A message is normally sent right after its transaction commits; the relay sends only
        those still waiting this long after they were written, so it seldom races that send
        (a message sent twice is harmless to an ``IdempotentTask``, just wasted).
        """
        value = getattr(settings, "IDEMPOTENCY_OUTBOX_RELAY_AFTER", timedelta(seconds=30))
        return as_timedelta(value)

    @property
    def TASK_MAX_DELIVERIES(self) -> int:
        """Deliveries of one task message that may start without finishing. Default 5.

        ``acks_late`` and ``reject_on_worker_lost`` deliver again the task of a worker that
        died; a task that kills its own worker would come back for ever. After this many
        deliveries that never reported back, the next one stores the operation as failed and
        the message is acknowledged. A task's ``idempotency_max_deliveries`` overrides it.
        """
        return int(getattr(settings, "IDEMPOTENCY_TASK_MAX_DELIVERIES", 5))

    @property
    def METRICS(self) -> tuple[str, ...]:
        """Where the engine reports what it does: ``"prometheus"`` (the ``prometheus`` extra)
        and/or ``"opentelemetry"`` (the ``opentelemetry`` extra), or the dotted path of an
        observer class of your own (``core.observers.Observer``). Default none: nothing is
        measured, and the engine pays one settings read per operation."""
        names: Sequence[str] = getattr(settings, "IDEMPOTENCY_METRICS", ())
        if isinstance(names, str):  # "prometheus" would be ten one-letter names
            raise TypeError("IDEMPOTENCY_METRICS must be a list of names, not a string.")
        return tuple(str(name) for name in names)


def as_timedelta(value: timedelta | int | float) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=value)


app_settings = Settings()
