"""How the cost grows: with live records in the table, and with the stored body's size."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import database
from .clients import InProcess
from .measure import CREATE, FIRST, REPLAY, Series, interleaved
from .stats import Summary
from .variants import BARE, OURS, order_body


@dataclass(frozen=True)
class GrowthRow:
    label: str
    records: int
    create: Summary
    first: Summary
    replay: Summary
    fill_seconds: float


def _three(pad: int = 0) -> list[Series]:
    return [Series(BARE, CREATE, pad), Series(OURS, FIRST, pad), Series(OURS, REPLAY, pad)]


def table_growth(
    client: InProcess, sizes: list[int], *, rounds: int, warmup: int, log: Callable[[str], None]
) -> list[GrowthRow]:
    rows: list[GrowthRow] = []
    for size in sizes:
        log(f"  filling the record table to {size:,} live records ...")
        started = time.monotonic()
        present = database.fill_records(size)
        filled = time.monotonic() - started
        log(f"  ... {present:,} records after {filled:.0f} s; measuring")
        series = _three()
        results = interleaved(client, series, rounds=rounds, warmup=warmup, tag=f"grow{size}")
        rows.append(
            GrowthRow(
                label=f"{size:,}",
                records=present,
                create=results.summary(series[0]),
                first=results.summary(series[1]),
                replay=results.summary(series[2]),
                fill_seconds=filled,
            )
        )
    return rows


def pad_for(client: InProcess, target_bytes: int) -> int:
    """The padding that makes the create's response body about ``target_bytes`` long."""
    reply = client.post(BARE.path, order_body("size-probe"), None)
    return max(0, target_bytes - len(reply.body))


def body_sizes(
    client: InProcess, targets: list[tuple[str, int]], *, rounds: int, warmup: int
) -> list[GrowthRow]:
    records = database.record_count()
    groups = [(label, _three(pad_for(client, target))) for label, target in targets]
    # Every size in the same rounds, so drift cannot pass for an effect of the size.
    every = [series for _, three in groups for series in three]
    results = interleaved(client, every, rounds=rounds, warmup=warmup, tag="body")
    return [
        GrowthRow(
            label=label,
            records=records,
            create=results.summary(three[0]),
            first=results.summary(three[1]),
            replay=results.summary(three[2]),
            fill_seconds=0.0,
        )
        for label, three in groups
    ]
