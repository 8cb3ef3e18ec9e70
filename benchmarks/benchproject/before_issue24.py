"""The hot path before issue 24, kept measurable here and nowhere else.

Issue 24 made two cuts, each measured against the path before it in the same rounds
(``docs/benchmarks.md``):

- a replay's lookup rides on its claim on PostgreSQL (``store.claim_or_find``: one statement
  between BEGIN and COMMIT); before, the claim inserted nothing and a second statement looked
  the record up, as a dialect without ``claim_or_find`` still does (``two_steps()``);
- the view's savepoint stays open until the COMMIT (``engine._view_savepoint``); before, the
  view ran in a nested ``atomic()``, which releases it with a RELEASE of its own
  (``released_savepoint()``).

``install()`` (called once by the bench app) wraps both; each wrapper takes the old way only
inside its context manager, which a view of the bench project enters for its own requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import transaction

from django_idempotency.core import engine, store

_two_steps: ContextVar[bool] = ContextVar("bench_two_steps", default=False)
_released: ContextVar[bool] = ContextVar("bench_released_savepoint", default=False)


@contextmanager
def _switched(flag: ContextVar[bool]) -> Iterator[None]:
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def two_steps() -> Any:
    return _switched(_two_steps)


def released_savepoint() -> Any:
    return _switched(_released)


def install() -> None:
    one_statement: Callable[..., Any] = store.claim_or_find
    if getattr(one_statement, "bench_wrapper", False):
        return

    def claim_or_find(operation: Any, now: Any, *, event_limit: Any) -> Any:
        if _two_steps.get():
            # What a dialect without the hook does: the claim alone; the engine looks up after.
            return store.claim(operation, now)
        return one_statement(operation, now, event_limit=event_limit)

    open_savepoint: Callable[..., Any] = engine._view_savepoint

    def view_savepoint(using: str) -> Any:
        if _released.get():
            return transaction.atomic(using=using)
        return open_savepoint(using)

    claim_or_find.bench_wrapper = True  # type: ignore[attr-defined]
    store.claim_or_find = claim_or_find  # type: ignore[assignment]
    engine._view_savepoint = view_savepoint  # type: ignore[assignment]
