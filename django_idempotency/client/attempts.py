"""The attempts of one logical request, shared by the sync and async adapters: what each one
got, whether another is due, and what the caller is told at the end."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from .policy import RetryPolicy, Verdict

R = TypeVar("R")
Outcome = Literal["done", "refused", "gave_up"]

#: The response header the server sets on a stored answer sent again.
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Attempt:
    """One try: its answer's status, or the error that left it without one; and the wait
    before the next try (``None`` for the last)."""

    number: int
    status: int | None
    error: str | None
    wait: float | None = None


@dataclass(frozen=True)
class Result(Generic[R]):
    """The final answer to one logical request, with the key every attempt carried.

    ``outcome``: ``"done"`` (below 400), ``"refused"`` (a 4xx about the request itself: not
    retried, read the problem), ``"gave_up"`` (still retryable when the attempts or the time
    ran out: its fate is unknown; send it again later with ``key``).
    """

    response: R
    key: str | None
    attempts: int
    outcome: Outcome
    history: tuple[Attempt, ...] = field(default=())
    replayed: bool = False

    @property
    def status_code(self) -> int:
        return int(self.history[-1].status or 0)


class GaveUp(Exception):
    """No answer came back within the attempts or the time allowed: the request may or may not
    have been performed. Send it again later with the same ``key`` to find out."""

    def __init__(self, key: str | None, history: tuple[Attempt, ...]) -> None:
        self.key = key
        self.history = history
        self.attempts = len(history)
        last = history[-1].error if history else "no attempt"
        super().__init__(
            f"No answer after {self.attempts} attempt(s) (last: {last}); the request may have "
            f"been performed. Send it again with Idempotency-Key {key!r} to get its answer."
        )


class Attempts:
    """Bookkeeping of one logical request's attempts; the adapters do the sending and the
    sleeping (``time.sleep`` or ``await anyio.sleep``)."""

    def __init__(
        self,
        policy: RetryPolicy,
        key: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.key = key
        self._clock = clock
        self._started = clock()
        self._history: list[Attempt] = []

    @property
    def number(self) -> int:
        """The attempt about to be made (1 for the first)."""
        return len(self._history) + 1

    def answered(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> tuple[Verdict, float | None]:
        """Record an answer; return its verdict and the wait before the next attempt, ``None``
        when there is to be none."""
        verdict = self.policy.verdict(status, headers, body)
        wait = self._next_wait(headers) if verdict == "retry" else None
        self._history.append(Attempt(self.number, status, None, wait))
        return verdict, wait

    def failed(self, error: BaseException) -> float | None:
        """Record a transport error (no answer); return the wait before the next attempt."""
        wait = self._next_wait(None)
        self._history.append(Attempt(self.number, None, f"{type(error).__name__}: {error}", wait))
        return wait

    def _next_wait(self, headers: Mapping[str, str] | None) -> float | None:
        if self.number >= self.policy.max_attempts:
            return None
        wait = self.policy.delay(self.number, headers)
        if wait is None or self._clock() - self._started + wait > self.policy.max_elapsed:
            return None
        return wait

    def result(self, response: R, verdict: Verdict, headers: Mapping[str, str]) -> Result[R]:
        outcome: Outcome = "gave_up" if verdict == "retry" else verdict
        replayed = (headers.get(REPLAYED_HEADER) or headers.get(REPLAYED_HEADER.lower())) == "true"
        history = tuple(self._history)
        return Result(response, self.key, len(history), outcome, history, replayed)

    def gave_up(self) -> GaveUp:
        return GaveUp(self.key, tuple(self._history))
