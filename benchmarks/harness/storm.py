"""The duplicate storm: many simultaneous copies of one request, over HTTP, per key."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from time import perf_counter_ns

import requests

from .stats import Summary, summarize
from .variants import Variant, order_body


@dataclass(frozen=True)
class StormResult:
    variant: Variant
    keys: int
    copies: int
    statuses: Counter[int]
    rows_per_key: list[int]
    latency: Summary
    errors: int

    @property
    def requests(self) -> int:
        return self.keys * self.copies

    @property
    def duplicates(self) -> int:
        """Rows beyond the first, summed over the keys: 0 is the only correct answer."""
        return sum(max(0, rows - 1) for rows in self.rows_per_key)

    @property
    def fresh(self) -> int:
        # Every row is one run of the view, answered 201 by that run.
        return sum(self.rows_per_key)

    @property
    def replayed(self) -> int:
        return max(0, self.statuses[201] - self.fresh)

    @property
    def copies_total(self) -> int:
        """The requests that were not the one run per key a correct layer allows."""
        return self.requests - min(self.fresh, self.keys)

    @property
    def replayed_share(self) -> float:
        return self.replayed / self.copies_total if self.copies_total else 0.0

    @property
    def conflict_share(self) -> float:
        return self.statuses[409] / self.copies_total if self.copies_total else 0.0


def run_storm(
    base_url: str, token: str, variant: Variant, *, keys: int, copies: int
) -> StormResult:
    from benchproject.models import Order
    from django.db.models import Count

    statuses: Counter[int] = Counter()
    latencies: list[int] = []
    labels: list[str] = []
    errors = 0
    lock = threading.Lock()
    url = base_url + variant.path
    for _ in range(keys):
        label = f"storm-{variant.slug}-{uuid.uuid4().hex[:12]}"
        labels.append(label)
        body = order_body(label)
        headers = {
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            # A fresh connection per copy: the copies really are separate clients.
            "Connection": "close",
        }
        if variant.idempotent:
            headers["Idempotency-Key"] = variant.new_key()
        barrier = threading.Barrier(copies)

        def fire(
            body: bytes = body,
            headers: dict[str, str] = headers,
            barrier: threading.Barrier = barrier,
        ) -> None:
            nonlocal errors
            barrier.wait()
            start = perf_counter_ns()
            try:
                response = requests.post(url, data=body, headers=headers, timeout=60)
            except requests.RequestException:
                with lock:
                    errors += 1
                return
            elapsed = perf_counter_ns() - start
            with lock:
                statuses[response.status_code] += 1
                latencies.append(elapsed)

        threads = [threading.Thread(target=fire) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    counts = dict(
        Order.objects.filter(sku__in=labels).values_list("sku").annotate(rows=Count("id"))
    )
    return StormResult(
        variant=variant,
        keys=keys,
        copies=copies,
        statuses=statuses,
        rows_per_key=[counts.get(label, 0) for label in labels],
        latency=summarize(latencies),
        errors=errors,
    )
