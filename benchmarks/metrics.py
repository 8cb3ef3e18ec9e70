#!/usr/bin/env python3
"""What ``IDEMPOTENCY_METRICS`` costs the engine: off, Prometheus, OpenTelemetry, both.

    PYTHONPATH=. .venv/bin/python benchmarks/metrics.py [--rounds 30] [--ops 200]

In one process on SQLite in memory (the fastest store, so the adapters' share is the largest
it can be): every round runs ``--ops`` operations through ``once.perform`` (half new keys,
half replays of them) under each setting, in an order that rotates every round, so drift hits
all alike. Prints each setting's median time per operation and its ratio to "off", and what the
hook itself costs when off (``watch()`` and the calls the engine makes on the ``OFF`` watch),
timed alone. docs/metrics.md quotes a run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "off": [],
    "prometheus": ["prometheus"],
    "opentelemetry": ["opentelemetry"],
    "both": ["prometheus", "opentelemetry"],
}


def setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.db import connection
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    connection.creation.create_test_db(verbosity=0)
    # The real SDK, as a project would set it up (an exporter that keeps spans in memory).
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def round_of(name: str, ops: int, prefix: str) -> float:
    """Seconds per operation of ``ops`` operations under the setting ``name``."""
    from django.test import override_settings

    from django_idempotency.once import perform

    keys = [f"{prefix}-{name}-{n}" for n in range(ops // 2)]
    with override_settings(IDEMPOTENCY_METRICS=SETTINGS[name]):
        started = time.perf_counter()
        for key in keys + keys:  # each key new, then replayed
            perform(lambda: {"ok": True}, scope="bench", key=key, fingerprint="f")
        return (time.perf_counter() - started) / len(keys * 2)


def off_hook_seconds() -> float:
    """What the engine's calls on the hook cost per operation with the setting off."""
    from django_idempotency.core.observers import watch
    from django_idempotency.once.operations import operation

    op = operation(scope="bench", key="k", fingerprint="f")

    def hook() -> None:
        seen = watch(op)
        for name in ("claim", "view", "store"):
            with seen.span(name):
                pass
        seen.outcome("stored")
        bool(seen)

    number = 100_000
    return min(timeit.repeat(hook, number=number, repeat=5)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    setup()
    names = list(SETTINGS)
    for name in names:  # warm-up: imports, first statements
        round_of(name, 20, "warm")
    times: dict[str, list[float]] = {name: [] for name in names}
    for number in range(args.rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            times[name].append(round_of(name, args.ops, f"r{number}"))
    off = statistics.median(times["off"])
    print(f"{'setting':<14} {'median µs/op':>13} {'ratio to off':>13}")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:<14} {median * 1e6:>13.1f} {median / off:>13.3f}")
    hook = off_hook_seconds()
    print(f"the hook when off: {hook * 1e6:.2f} µs/op, {hook / off:.2%} of an operation")


if __name__ == "__main__":
    main()
