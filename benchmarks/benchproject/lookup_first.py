"""The engine's hot path before issue 14, kept measurable here and nowhere else.

The engine claims first: a new key (nearly all traffic) goes straight to its claim, and a replay
costs a claim that inserts nothing plus the lookup. Before, every request looked its key up
first, outside any transaction: a replay was then one statement, and every new key paid for that
lookup. ``make bench`` measures both in the same rounds (``docs/benchmarks.md``, "previous
path"); this module rebuilds the old path around the engine, so the package ships one.

``install()`` (called once by the bench app) wraps the engine's private ``_replay_or_claim``;
the wrapper looks the key up first only inside ``looking_up_first()``, which one view of the
bench project enters for its own requests. The bench runs without ``ATOMIC_REQUESTS``, so the
lookup runs alone, as it did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.utils import timezone

from django_idempotency.conf import app_settings
from django_idempotency.core import engine, store

_active: ContextVar[bool] = ContextVar("bench_lookup_first", default=False)


@contextmanager
def looking_up_first() -> Iterator[None]:
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


def install() -> None:
    claim_first: Callable[..., Any] = engine._replay_or_claim
    if getattr(claim_first, "bench_wrapper", False):
        return

    def replay_or_claim(operation: Any, view: Any, *rest: Any) -> Any:  # rest: the metrics' watch
        if _active.get():
            limit = app_settings.MAX_EVENTS_PER_RECORD if app_settings.RECORD_EVENTS else None
            found = store.find_count_and_log(
                operation, by="key", now=timezone.now(), event_limit=limit
            )
            if found is not None:
                return engine._Blocker(
                    found.record, by_reference=False, replayable=found.replayable
                )
        return claim_first(operation, view, *rest)

    replay_or_claim.bench_wrapper = True  # type: ignore[attr-defined]
    engine._replay_or_claim = replay_or_claim  # type: ignore[assignment]
