"""The exporters as a project wires them: prometheus_client's default registry, and the
OpenTelemetry SDK's providers with its in-memory reader and span exporter (the real SDK).

The OpenTelemetry providers are global and set once per process; counters only grow, so each
test reads what changed while it ran (``Readings``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.test import override_settings
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

BOTH = ["prometheus", "opentelemetry"]


@dataclass
class OTel:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter


_otel: OTel | None = None


def _install_otel() -> OTel:
    global _otel
    if _otel is None:
        reader = InMemoryMetricReader()
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        _otel = OTel(reader, spans)
    return _otel


@pytest.fixture
def otel() -> OTel:
    found = _install_otel()
    found.spans.clear()
    return found


Sample = tuple[str, dict[str, str], float]


def prometheus_samples() -> list[Sample]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for metric in REGISTRY.collect()
        for sample in metric.samples
    ]


def otel_samples(telemetry: OTel) -> list[Sample]:
    """Each point as (name, attributes, value): a counter's sum, a histogram's count."""
    data = telemetry.reader.get_metrics_data()
    found: list[Sample] = []
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = point.count if hasattr(point, "count") else point.value
                    found.append((metric.name, dict(point.attributes), float(value)))
    return found


def total(samples: list[Sample], name: str, labels: dict[str, str]) -> float:
    return sum(
        value
        for sample, attributes, value in samples
        if sample == name and all(attributes.get(k) == v for k, v in labels.items())
    )


class Readings:
    """What each exporter counted since it was made, by metric name and labels."""

    def __init__(self, telemetry: OTel) -> None:
        self.telemetry = telemetry
        self.start_prometheus = prometheus_samples()
        self.start_otel = otel_samples(telemetry)

    def prometheus(self, name: str, **labels: str) -> float:
        now = total(prometheus_samples(), name, labels)
        return now - total(self.start_prometheus, name, labels)

    def otel(self, name: str, **labels: str) -> float:
        now = total(otel_samples(self.telemetry), name, labels)
        return now - total(self.start_otel, name, labels)

    def gauge(self, name: str, otel_name: str, database: str) -> tuple[float, float]:
        """A gauge's current value in each exporter (Prometheus', OpenTelemetry's)."""
        return (
            total(prometheus_samples(), name, {"database": database}),
            total(otel_samples(self.telemetry), otel_name, {"idempotency.database": database}),
        )


@pytest.fixture
def readings(otel: OTel) -> Iterator[Readings]:
    """Both exporters switched on (``IDEMPOTENCY_METRICS``), and what they count from now."""
    # Imported first, so that its metrics are in the registry before the first reading.
    import django_idempotency.metrics.prometheus  # noqa: F401

    with override_settings(IDEMPOTENCY_METRICS=BOTH):
        yield Readings(otel)


def finished_spans(telemetry: OTel) -> list[ReadableSpan]:
    return list(telemetry.spans.get_finished_spans())
