"""The soak's clients and the history they write.

Each client is one principal's careful payment client: it sends an operation with one key until
it gets a definite answer (another server after a dropped connection or a 5xx, a pause after an
in-flight 409), sometimes as several copies at once, and now and then checks the system: it
replays a settled key, reuses a key with another body, reuses a business reference under a new
key, or picks a key another principal just used. Every attempt lands in the history with its
times and its answer's bytes; the checker reads nothing else from the clients.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import http
from .doors import DOORS, Context, Door, Request


@dataclass(frozen=True)
class Principal:
    user_id: int
    token: str


@dataclass(frozen=True)
class Target:
    name: str
    port: int


@dataclass
class Attempt:
    server: str
    sent: float
    done: float
    status: int | None = None
    error: str | None = None
    content_type: str = ""
    replayed: bool = False
    retry_after: bool = False
    body: bytes = b""

    @property
    def answered(self) -> bool:
        return self.status is not None


@dataclass
class Op:
    id: int
    client: int
    user: int
    door: str
    #: new, shared-key (a key another principal used), key-reuse (same key, other body),
    #: ref-same / ref-other (a new key on a reference already paid: same / other body), keyless.
    kind: str
    key: str | None
    token: str
    reference: str | None
    path: str
    body: bytes
    origin: int | None
    started: float
    attempts: list[Attempt] = field(default_factory=list)
    #: Index in ``attempts`` of the first definite answer; None if the client gave up.
    answer: int | None = None
    finished: float | None = None

    @property
    def answered(self) -> Attempt | None:
        return None if self.answer is None else self.attempts[self.answer]

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["body"] = self.body.decode("utf-8", "replace")
        for attempt in document["attempts"]:
            attempt["body"] = attempt["body"].decode("utf-8", "replace")
        return document


@dataclass
class Plan:
    """The workload's knobs (its randomness comes from the seed)."""

    clients: int = 32
    attempt_timeout: float = 8.0
    #: A client gives up on an operation this long after its first attempt.
    op_deadline: float = 15.0
    copies_rate: float = 0.08
    replay_rate: float = 0.15
    key_reuse_rate: float = 0.08
    ref_reuse_rate: float = 0.25
    shared_key_rate: float = 0.05
    keyless_rate: float = 0.3


class History:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.ops: list[Op] = []
        self._ids = itertools.count(1)
        self.numbers = itertools.count(1)
        #: (door, key, user) of recent keyed operations, for keys shared across principals.
        self.recent_keys: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=200)
        #: Set on SIGINT/SIGTERM. Python 3.11's ``wait_for`` can swallow a cancellation that
        #: races a completed request, so the loops also check this flag.
        self.stopping = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    def new_op(self, **fields: Any) -> Op:
        op = Op(id=next(self._ids), started=self.now(), **fields)
        self.ops.append(op)
        return op

    def dump(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for op in self.ops:
                out.write(json.dumps(op.as_json()) + "\n")


class Client:
    def __init__(
        self,
        index: int,
        principal: Principal,
        targets: list[Target],
        history: History,
        plan: Plan,
        seed: int,
    ) -> None:
        self.index = index
        self.principal = principal
        self.targets = targets
        self.history = history
        self.plan = plan
        self.rng = random.Random(f"{seed}-client-{index}")
        self.ctx = Context(principal.user_id, self.rng)
        self.server = index % len(targets)

    async def run(self, until: float) -> None:
        doors = DOORS
        weights = [door.weight for door in doors]
        while self.history.now() < until and not self.history.stopping:
            door = self.rng.choices(doors, weights)[0]
            request = door.build(self.ctx, next(self.history.numbers))
            if request is None:
                door = doors[0]
                request = door.build(self.ctx, next(self.history.numbers))
                if request is None:
                    await asyncio.sleep(0.1)
                    continue
            await self._operation(door, request)

    # -- one operation and its follow-ups ----------------------------------------------------

    async def _operation(self, door: Door, request: Request) -> None:
        plan, rng = self.plan, self.rng
        if not door.key_required and rng.random() < plan.keyless_rate:
            op = self._op(door, request, kind="keyless", key=None)
            await self._attempt(door, op)  # no key: a retry would be a new operation
            return
        kind, key = "new", f"k{self.index}-{next(self.history.numbers)}"
        shared = [entry for entry in self.history.recent_keys if entry[0] == door.name]
        if shared and rng.random() < plan.shared_key_rate:
            _, other_key, other_user = rng.choice(shared)
            if other_user != self.principal.user_id:
                kind, key = "shared-key", other_key
        op = self._op(door, request, kind=kind, key=key)
        self.history.recent_keys.append((door.name, key, self.principal.user_id))
        await self._settle(door, op)
        answer = op.answered
        if answer is None or answer.status is None:
            return
        if 200 <= answer.status < 300 and door.remember:
            self.ctx.remember(door.name, _json(answer.body))
        if rng.random() < plan.replay_rate:
            await self._attempt(door, op)  # the same key and body once more: a replay
        if rng.random() < plan.key_reuse_rate:
            other = door.another(self.ctx, request, next(self.history.numbers))
            if other is not None:
                reuse = self._op(door, other, kind="key-reuse", key=key, origin=op.id)
                await self._settle(door, reuse)
        if (
            door.unique_reference
            and 200 <= answer.status < 300
            and rng.random() < plan.ref_reuse_rate
        ):
            same = rng.random() < 0.5
            other = request if same else door.another(self.ctx, request, next(self.history.numbers))
            if other is not None:
                new_key = f"k{self.index}-{next(self.history.numbers)}"
                reuse = self._op(
                    door, other, kind="ref-same" if same else "ref-other", key=new_key, origin=op.id
                )
                await self._settle(door, reuse)

    def _op(
        self, door: Door, request: Request, *, kind: str, key: str | None, origin: int | None = None
    ) -> Op:
        return self.history.new_op(
            client=self.index,
            user=self.principal.user_id,
            door=door.name,
            kind=kind,
            key=key,
            token=request.token,
            reference=request.reference,
            path=request.path,
            body=request.body,
            origin=origin,
        )

    async def _settle(self, door: Door, op: Op) -> None:
        """Retry with the same key and body until a definite answer or the deadline."""
        deadline = op.started + self.plan.op_deadline
        if self.rng.random() < self.plan.copies_rate:
            copies = 2 + self.rng.randrange(2)
            await asyncio.gather(*(self._attempt(door, op, rotate=True) for _ in range(copies)))
        while op.answer is None and self.history.now() < deadline and not self.history.stopping:
            attempt = await self._attempt(door, op)
            if op.answer is not None:
                break
            if attempt.retry_after:
                await asyncio.sleep(self.rng.uniform(0.2, 0.5))
            else:
                self.server = (self.server + 1) % len(self.targets)  # try the other server
                await asyncio.sleep(self.rng.uniform(0.02, 0.15))

    async def _attempt(self, door: Door, op: Op, *, rotate: bool = False) -> Attempt:
        if rotate:
            self.server = (self.server + 1) % len(self.targets)
        target = self.targets[self.server]
        headers = {
            "Authorization": f"Token {self.principal.token}",
            "Content-Type": "application/json",
        }
        if op.key is not None:
            headers["Idempotency-Key"] = op.key
        attempt = Attempt(server=target.name, sent=self.history.now(), done=0.0)
        op.attempts.append(attempt)
        try:
            answer = await http.request(
                target.port,
                "POST",
                op.path,
                headers=headers,
                body=op.body,
                timeout=self.plan.attempt_timeout,
            )
        except http.NoAnswer as exc:
            attempt.error = str(exc)
        else:
            attempt.status = answer.status
            attempt.content_type = answer.headers.get("content-type", "")
            attempt.replayed = answer.headers.get("idempotent-replayed") == "true"
            attempt.retry_after = "retry-after" in answer.headers
            attempt.body = answer.body
            if op.answer is None and door.is_definite(answer.status, answer.headers):
                op.answer = next(i for i, seen in enumerate(op.attempts) if seen is attempt)
                op.finished = self.history.now()
        attempt.done = self.history.now()
        return attempt


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
