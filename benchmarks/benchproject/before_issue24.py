"""The hot path before issue 24, kept measurable here and nowhere else.

Issue 24 left the view's savepoint open until the COMMIT (``engine._view_savepoint``); before,
the view ran in a nested ``atomic()``, which releases its savepoint with a RELEASE of its own,
one round trip more per new key. ``make bench`` measures both in the same rounds
(``docs/benchmarks.md``, "Before and after issue 24").

``install()`` (called once by the bench app) wraps ``engine._view_savepoint``; the wrapper
takes the old way only inside ``released_savepoint()``, which one view of the bench project
enters for its own requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import transaction

from django_idempotency.core import engine

_released: ContextVar[bool] = ContextVar("bench_released_savepoint", default=False)


@contextmanager
def released_savepoint() -> Iterator[None]:
    token = _released.set(True)
    try:
        yield
    finally:
        _released.reset(token)


def install() -> None:
    open_savepoint: Callable[..., Any] = engine._view_savepoint
    if getattr(open_savepoint, "bench_wrapper", False):
        return

    def view_savepoint(using: str) -> Any:
        if _released.get():
            return transaction.atomic(using=using)
        return open_savepoint(using)

    view_savepoint.bench_wrapper = True  # type: ignore[attr-defined]
    engine._view_savepoint = view_savepoint  # type: ignore[assignment]
