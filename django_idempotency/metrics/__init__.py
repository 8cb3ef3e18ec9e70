"""Metrics and traces of the engine, the purge and the outbox relay, one adapter per library.

Each adapter is an ``Observer`` (``core/observers.py``) named in ``IDEMPOTENCY_METRICS``:
``prometheus`` (``prometheus.py``, the ``prometheus`` extra) and ``opentelemetry``
(``opentelemetry.py``, the ``opentelemetry`` extra). Nothing imports them until that setting
names them. Every name, label and setting: docs/metrics.md.
"""

#: Upper bounds (seconds) of the wait histograms: from a commit's few milliseconds to the
#: longest ``lock_timeout`` worth waiting.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Upper bounds (seconds) of the phase histogram (claim, view, store, replay).
PHASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
