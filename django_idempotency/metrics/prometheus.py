"""Prometheus metrics (``prometheus`` extra; ``IDEMPOTENCY_METRICS = ["prometheus"]``).

On prometheus_client's default registry, so whatever exports it (django-prometheus's
``/metrics``, ``prometheus_client.start_http_server``, ``make_wsgi_app``) shows them; named as
django-prometheus names its own: a ``django_`` prefix, ``_total`` counters, ``_seconds``.
Under gunicorn with ``PROMETHEUS_MULTIPROC_DIR`` each worker writes its own files, which the
exporter adds up: counters and histograms as usual, the gauges as the most recent pass's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

from prometheus_client import Counter, Gauge, Histogram

from ..core.observers import BACKLOG, Labels
from . import PHASE_BUCKETS, WAIT_BUCKETS

OUTCOMES = Counter(
    "django_idempotency_outcomes_total",
    "Idempotent operations by how they ended.",
    ["outcome", "door", "scope"],
)
WAITS = Counter(
    "django_idempotency_waits_total",
    "Claims that waited behind a copy of their request in flight.",
    ["door", "scope"],
)
WAIT_SECONDS = Histogram(
    "django_idempotency_wait_seconds",
    "How long a claim waited behind a copy of its request in flight.",
    ["door", "scope"],
    buckets=WAIT_BUCKETS,
)
PHASE_SECONDS = Histogram(
    "django_idempotency_phase_seconds",
    "How long each phase of an operation took: claim, view, store, replay.",
    ["phase", "door", "scope"],
    buckets=PHASE_BUCKETS,
)
_GAUGE_HELP = {
    "purge_lag_seconds": "Age of the oldest record the last purge pass found due.",
    "purge_backlog_records": "Records the last purge pass found due (deleted or stripped).",
    "purge_last_pass_timestamp_seconds": "When the last purge pass ended (Unix time).",
    "outbox_backlog_messages": "Outbox messages waiting to be sent after the last relay pass.",
    "outbox_oldest_age_seconds": "Age of the oldest waiting outbox message after the last pass.",
    "outbox_parked_messages": "Outbox messages the relay has given up on.",
    "outbox_last_pass_timestamp_seconds": "When the last relay pass ended (Unix time).",
}
# "mostrecent": under PROMETHEUS_MULTIPROC_DIR the value of the last pass in any process.
GAUGES = {
    name: Gauge(
        f"django_idempotency_{name}",
        _GAUGE_HELP[name],
        ["database"],
        multiprocess_mode="mostrecent",
    )
    for name in BACKLOG
}


class _Timed:
    """Times one phase into ``PHASE_SECONDS``; a class, not a generator: it runs per phase."""

    __slots__ = ("histogram", "started")

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.started = 0.0

    def __enter__(self) -> _Timed:
        self.started = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.histogram.observe(time.perf_counter() - self.started)


class PrometheusObserver:
    """The engine's, the purge's and the relay's reports as Prometheus metrics."""

    def span(self, name: str, labels: Labels) -> _Timed:
        return _Timed(PHASE_SECONDS.labels(name, labels.door, labels.scope))

    def outcome(self, name: str, labels: Labels) -> None:
        OUTCOMES.labels(name, labels.door, labels.scope).inc()

    def waited(self, labels: Labels, seconds: float) -> None:
        WAITS.labels(labels.door, labels.scope).inc()
        WAIT_SECONDS.labels(labels.door, labels.scope).observe(seconds)

    def backlog(self, database: str, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            GAUGES[name].labels(database).set(value)
