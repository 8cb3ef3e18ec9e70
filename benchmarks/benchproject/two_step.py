"""The replay of issue 14's claim-first path, kept measurable here and nowhere else.

Since issue 24 a replay's lookup rides on its claim on PostgreSQL (``store.claim_or_find``: one
statement between BEGIN and COMMIT). Before, the claim inserted nothing and a second statement
looked the record up; that is still the path of a dialect without ``claim_or_find``, and the
path here: ``make bench`` measures both in the same rounds (``docs/benchmarks.md``).

``install()`` (called once by the bench app) wraps the store's ``claim_or_find``; the wrapper
takes the two steps only inside ``two_steps()``, which one view of the bench project enters
for its own requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django_idempotency.core import store

_active: ContextVar[bool] = ContextVar("bench_two_step", default=False)


@contextmanager
def two_steps() -> Iterator[None]:
    token = _active.set(True)
    try:
        yield
    finally:
        _active.reset(token)


def install() -> None:
    one_statement: Callable[..., Any] = store.claim_or_find
    if getattr(one_statement, "bench_wrapper", False):
        return

    def claim_or_find(operation: Any, now: Any, *, event_limit: Any) -> Any:
        if _active.get():
            # What a dialect without the hook does: the claim alone; the engine looks up after.
            return store.claim(operation, now)
        return one_statement(operation, now, event_limit=event_limit)

    claim_or_find.bench_wrapper = True  # type: ignore[attr-defined]
    store.claim_or_find = claim_or_find  # type: ignore[assignment]
