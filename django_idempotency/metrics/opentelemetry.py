"""OpenTelemetry traces and metrics (``opentelemetry`` extra; ``IDEMPOTENCY_METRICS =
["opentelemetry"]``).

The API only: spans go to the tracer provider and instruments to the meter provider the
project sets up with the SDK (or an agent), whenever it does; without one they cost next to
nothing. Spans are children of the current span (the request's, when the project traces
requests). Attributes carry the door and the endpoint, never a key or a principal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from threading import Lock

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from .. import __version__
from ..core.observers import BACKLOG, Labels
from . import WAIT_BUCKETS

SCOPE = "django_idempotency"
#: The gauges' OpenTelemetry names and units, by the observer's names for them.
GAUGES: dict[str, tuple[str, str]] = {
    "purge_lag_seconds": ("idempotency.purge.lag", "s"),
    "purge_backlog_records": ("idempotency.purge.backlog", "{record}"),
    "purge_last_pass_timestamp_seconds": ("idempotency.purge.last_pass", "s"),
    "outbox_backlog_messages": ("idempotency.outbox.backlog", "{message}"),
    "outbox_oldest_age_seconds": ("idempotency.outbox.oldest_age", "s"),
    "outbox_parked_messages": ("idempotency.outbox.parked", "{message}"),
    "outbox_last_pass_timestamp_seconds": ("idempotency.outbox.last_pass", "s"),
}


def _attributes(labels: Labels) -> dict[str, str]:
    return {"idempotency.door": labels.door, "idempotency.scope": labels.scope}


class OpenTelemetryObserver:
    """The engine's, the purge's and the relay's reports as OpenTelemetry spans and metrics."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer(SCOPE, __version__)
        meter = metrics.get_meter(SCOPE, __version__)
        self.outcomes = meter.create_counter(
            "idempotency.outcomes", "{operation}", "Idempotent operations by how they ended."
        )
        self.waits = meter.create_counter(
            "idempotency.waits", "{claim}", "Claims that waited behind a copy in flight."
        )
        self.wait_duration = meter.create_histogram(
            "idempotency.wait.duration",
            "s",
            "How long a claim waited behind a copy of its request in flight.",
            explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
        )
        # The purge and the relay report after each pass; the reader collects the last value.
        self.last: dict[tuple[str, str], float] = {}
        self.lock = Lock()
        for name in BACKLOG:
            otel_name, unit = GAUGES[name]
            meter.create_observable_gauge(otel_name, [self._reader(name)], unit)

    def span(self, name: str, labels: Labels) -> AbstractContextManager[object]:
        return self.tracer.start_as_current_span(
            f"idempotency.{name}", attributes=_attributes(labels)
        )

    def outcome(self, name: str, labels: Labels) -> None:
        self.outcomes.add(1, {"idempotency.outcome": name, **_attributes(labels)})

    def waited(self, labels: Labels, seconds: float) -> None:
        attributes = _attributes(labels)
        self.waits.add(1, attributes)
        self.wait_duration.record(seconds, attributes)

    def backlog(self, database: str, values: Mapping[str, float]) -> None:
        with self.lock:
            self.last.update({(name, database): value for name, value in values.items()})

    def _reader(self, name: str) -> _Reader:
        return _Reader(self, name)


class _Reader:
    """The callback of one observable gauge: the last value of each database."""

    def __init__(self, observer: OpenTelemetryObserver, name: str) -> None:
        self.observer = observer
        self.name = name

    def __call__(self, options: CallbackOptions) -> Iterable[Observation]:
        with self.observer.lock:
            found = [(db, v) for (name, db), v in self.observer.last.items() if name == self.name]
        return [Observation(value, {"idempotency.database": db}) for db, value in found]
