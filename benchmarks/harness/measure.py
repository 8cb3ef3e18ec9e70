"""Interleaved measurement: every round sends one request of every series, in rotating order,
so that drift (cache warm-up, autovacuum, a noisy neighbour) hits every series alike."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .clients import Reply, Sender
from .stats import Summary, summarize
from .variants import Variant, order_body

CREATE, FIRST, REPLAY = "create", "first", "replay"


@dataclass(frozen=True)
class Series:
    variant: Variant
    mode: str
    pad: int = 0

    @property
    def group(self) -> tuple[str, int]:
        return (self.variant.slug, self.pad)


@dataclass
class _Previous:
    key: str
    body: bytes
    answer: bytes


@dataclass
class Results:
    samples: dict[Series, list[int]] = field(default_factory=lambda: defaultdict(list))
    # Replays whose body differed from the first answer's (a re-run would show a new id).
    replay_differs: dict[Series, int] = field(default_factory=lambda: defaultdict(int))

    def summary(self, series: Series) -> Summary:
        return summarize(self.samples[series])


class UnexpectedAnswer(RuntimeError):
    pass


def _expect(series: Series, reply: Reply, status: int = 201) -> None:
    if reply.status != status:
        raise UnexpectedAnswer(
            f"{series.variant.label} {series.mode}: expected {status}, got {reply.status}: "
            f"{reply.body[:500]!r}"
        )


def interleaved(
    sender: Sender, series_list: list[Series], *, rounds: int, warmup: int, tag: str
) -> Results:
    results = Results()
    previous: dict[tuple[str, int], _Previous] = {}

    def first(series: Series, label: str) -> _Previous:
        key = series.variant.new_key()
        body = order_body(label, series.pad)
        reply = sender.post(series.variant.path, body, key)
        _expect(series, reply)
        return _Previous(key, body, reply.body)

    # Seed every group with a stored response, so round 0 has something to replay.
    for series in series_list:
        if series.mode == REPLAY and series.group not in previous:
            previous[series.group] = first(series, f"{tag}-seed-{series.variant.slug}")

    for index in range(warmup + rounds):
        shift = index % len(series_list)
        fresh: dict[tuple[str, int], _Previous] = {}
        for series in series_list[shift:] + series_list[:shift]:
            label = f"{tag}-{series.variant.slug}-{index}"
            if series.mode == CREATE:
                reply = sender.post(series.variant.path, order_body(label, series.pad), None)
                _expect(series, reply)
            elif series.mode == FIRST:
                key = series.variant.new_key()
                body = order_body(label, series.pad)
                reply = sender.post(series.variant.path, body, key)
                _expect(series, reply)
                fresh[series.group] = _Previous(key, body, reply.body)
            else:
                # The key the previous round created: each timed replay is a key's first replay.
                stored = previous[series.group]
                reply = sender.post(series.variant.path, stored.body, stored.key)
                _expect(series, reply)
                if reply.body != stored.answer:
                    results.replay_differs[series] += 1
            if index >= warmup:
                results.samples[series].append(reply.elapsed_ns)
        previous.update(fresh)
    return results
