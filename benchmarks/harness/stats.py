"""Summaries of latency samples: median, p99, and ratios against the baseline's median."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    count: int
    median_ms: float
    p99_ms: float

    def ratio_to(self, baseline: Summary) -> float:
        return self.median_ms / baseline.median_ms


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed, never an interpolation."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples_ns: list[int]) -> Summary:
    values = sorted(sample / 1e6 for sample in samples_ns)
    return Summary(
        count=len(values),
        median_ms=percentile(values, 0.5),
        p99_ms=percentile(values, 0.99),
    )
