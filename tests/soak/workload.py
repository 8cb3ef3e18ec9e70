"""The soak's clients and the history they write.

Each client is one principal's careful payment client: it sends an operation with one key until
it gets a definite answer (another server after a dropped connection or a 5xx, a pause after an
in-flight 409), sometimes as several copies at once, and now and then checks the system: it
replays a settled key, reuses a key with another body, reuses a business reference under a new
key, or picks a key another principal just used. A door's keys are the client's own, issued
by the server (``POST /api/idempotency-keys/``) or read from the door's rendered form after a
session login, as a browser would. An issued key may start an operation only until its max age
(the soak's servers run with a few seconds): the client retries some operations once more after
that age (a retry must replay whatever the key's age), sometimes uses a key only after it
(a form left open), and on ``400 issued-key-expired`` does what the problem says: it gets a new
key and sends the same request again (safe only because nothing ran under the old one). Every
attempt lands in the history with its times and its answer's bytes; the checker reads nothing
else from the clients.
"""

from __future__ import annotations

import asyncio
import collections
import html
import itertools
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from . import http
from .doors import DOORS, EXPIRED, Context, Door, Request, problem_code


@dataclass(frozen=True)
class Principal:
    user_id: int
    token: str
    #: For the HTML doors' session login (password ``soak``).
    username: str = ""


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    #: ``wsgi`` or ``asgi``: a door is sent only to the servers that serve it.
    serves: str = "wsgi"


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
    #: The refusal's problem code (``doors.problem_code``), ``""`` for anything else.
    problem: str = ""

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
    #: ref-same / ref-other (a new key on a reference already paid: same / other body), keyless,
    #: rekeyed (``origin``'s request again under a new key, after its issued key expired).
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
    #: When the client got the key from the server (issued keys), for their max age.
    key_at: float | None = None

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
    #: The servers' ``IDEMPOTENCY_ISSUED_KEY_MAX_AGE`` (0: the client never waits it out).
    issued_key_max_age: float = 0.0
    #: Of the operations under an issued key, the share retried once more after its max age.
    late_retry_rate: float = 0.3
    #: Of the new operations under an issued key, the share whose key is used only after it.
    stale_key_rate: float = 0.05
    #: How many new keys a client gets for one request refused as expired, at most.
    rekeys: int = 3


@dataclass
class PoisonSent:
    """A poison task the run sent (``Poisoner``): its id, and when the broker confirmed it."""

    task_id: str
    sent: float


class History:
    def __init__(
        self,
        t0: float,
        *,
        max_ops: int | None = None,
        more_faults: Callable[[], bool] = lambda: False,
    ) -> None:
        self.t0 = t0
        self.ops: list[Op] = []
        #: The operation count at which the clients stop starting new ones (``--operations``).
        self.max_ops = max_ops
        #: Whether the nemesis still owes faults (``--faults-per-kind``): the load goes on.
        self.more_faults = more_faults
        self.poison: list[PoisonSent] = []
        self._ids = itertools.count(1)
        self.numbers = itertools.count(1)
        #: (door, key, user) of recent keyed operations, for keys shared across principals.
        self.recent_keys: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=200)
        #: Set on SIGINT/SIGTERM. Python 3.11's ``wait_for`` can swallow a cancellation that
        #: races a completed request, so the loops also check this flag.
        self.stopping = False

    def now(self) -> float:
        return time.monotonic() - self.t0

    @property
    def full(self) -> bool:
        """Whether the run has started as many operations as it was asked to, and the nemesis
        has injected as many faults."""
        return self.max_ops is not None and len(self.ops) >= self.max_ops and not self.more_faults()

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
        #: The HTML doors' session: cookies (``sessionid``, ``csrftoken``) and the form's token.
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        #: Retries sent later, after an issued key's max age, while the client goes on.
        self._late: set[asyncio.Task[None]] = set()

    async def run(self, until: float) -> None:
        doors = DOORS
        weights = [door.weight for door in doors]
        history = self.history
        while history.now() < until and not history.stopping and not history.full:
            door = self.rng.choices(doors, weights)[0]
            request = door.build(self.ctx, next(self.history.numbers))
            if request is None:
                door = doors[0]
                request = door.build(self.ctx, next(self.history.numbers))
                if request is None:
                    await asyncio.sleep(0.1)
                    continue
            await self._operation(door, request)
        if self._late:
            await asyncio.gather(*self._late)

    # -- one operation and its follow-ups ----------------------------------------------------

    async def _operation(self, door: Door, request: Request) -> None:
        plan, rng = self.plan, self.rng
        if not door.key_required and rng.random() < plan.keyless_rate:
            op = self._op(door, request, kind="keyless", key=None)
            await self._attempt(door, op)  # no key: a retry would be a new operation
            return
        fresh = await self._new_key(door)
        if fresh is None:
            await asyncio.sleep(0.1)  # no key or no form this time (a fault): try again later
            return
        key_at = self.history.now() if door.issued else None
        max_age = plan.issued_key_max_age
        if door.issued and max_age and rng.random() < plan.stale_key_rate:
            # A form left open past the key's max age: the key can no longer start anything.
            await asyncio.sleep(max_age + rng.uniform(0.5, 1.5))
        kind, key = "new", fresh
        shared = [entry for entry in self.history.recent_keys if entry[0] == door.name]
        if shared and rng.random() < plan.shared_key_rate:
            _, other_key, other_user = rng.choice(shared)
            if other_user != self.principal.user_id:
                kind, key = "shared-key", other_key
        op = self._op(door, request, kind=kind, key=key, key_at=key_at)
        self.history.recent_keys.append((door.name, key, self.principal.user_id))
        await self._settle(door, op)
        op = await self._rekey(door, request, op)
        key = op.key or key  # the follow-ups below use the key that settled the request
        if door.issued and max_age and rng.random() < plan.late_retry_rate:
            self._retry_late(door, op, rng.uniform(0.3, 1.5))
        answer = op.answered
        if answer is None or answer.status is None:
            return
        if door.acknowledged(answer.status) and door.remember:
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
            and door.acknowledged(answer.status)
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

    async def _rekey(self, door: Door, request: Request, op: Op) -> Op:
        """After ``400 issued-key-expired`` (nothing ran under that key), what the problem
        says: a new key, the same request. Returns the operation that settled last."""
        for _ in range(self.plan.rekeys):
            answer = op.answered
            if answer is None or answer.problem != EXPIRED or self.history.stopping:
                break
            fresh = await self._new_key(door)
            if fresh is None:
                break
            op = self._op(
                door, request, kind="rekeyed", key=fresh, origin=op.id, key_at=self.history.now()
            )
            await self._settle(door, op)
        return op

    def _retry_late(self, door: Door, op: Op, margin: float) -> None:
        """Send ``op`` once more ``margin`` seconds after its key's max age, in the background:
        whatever the key started must replay; if it started nothing, it is refused as expired."""
        assert op.key_at is not None
        delay = op.key_at + self.plan.issued_key_max_age + margin - self.history.now()
        # The browser's session as it sent the form: the client may log in anew meanwhile.
        session = self._session()

        async def retry() -> None:
            await asyncio.sleep(max(delay, 0.0))
            if not self.history.stopping:
                await self._attempt(door, op, session=session)

        task = asyncio.create_task(retry())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    # -- keys and the HTML session -----------------------------------------------------------

    async def _new_key(self, door: Door) -> str | None:
        """A key for a new operation, from where the door takes them; ``None`` when the server
        could not hand one out (the next operation tries again)."""
        if door.key_source == "client":
            return f"k{self.index}-{next(self.history.numbers)}"
        if door.key_source == "issued":
            answer = await self._aside(door, "POST", ISSUE_PATH, {})
            key = _json(answer.body).get("key") if answer is not None else None
            return key if isinstance(key, str) and key else None
        if not self.cookies.get("sessionid") and not await self._login(door):
            return None
        answer = await self._aside(door, "GET", door.form_page, self._session())
        if answer is None or answer.status != 200:
            self.cookies.pop("sessionid", None)  # logged out (a redirect): log in again
            return None
        page = answer.body.decode("utf-8", "replace")
        key, csrf = _hidden(page, KEY_FIELD), _hidden(page, "csrfmiddlewaretoken")
        if key is None or csrf is None:
            return None
        self.csrf = csrf
        return key

    async def _login(self, door: Door) -> bool:
        page = await self._aside(door, "GET", LOGIN_PATH, {})
        csrf = (
            _hidden(page.body.decode("utf-8", "replace"), "csrfmiddlewaretoken") if page else None
        )
        if page is None or csrf is None:
            return False
        form = urlencode(
            {"username": self.principal.username, "password": "soak", "csrfmiddlewaretoken": csrf}
        )
        headers = {**self._session(), "Content-Type": "application/x-www-form-urlencoded"}
        answer = await self._aside(door, "POST", LOGIN_PATH, headers, form.encode())
        return answer is not None and answer.status == 302 and "sessionid" in self.cookies

    def _session(self) -> dict[str, str]:
        cookies = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return {"Cookie": cookies} if cookies else {}

    async def _aside(
        self, door: Door, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> http.Answer | None:
        """A request around an operation (a key, a form, a login): not part of the history."""
        target = self._target(door)
        if door.key_source == "issued":
            headers = {**headers, "Authorization": f"{door.auth_scheme} {self.principal.token}"}
        try:
            answer = await http.request(
                target.port,
                method,
                path,
                headers=headers,
                body=body,
                timeout=self.plan.attempt_timeout,
            )
        except http.NoAnswer:
            self.server = (self.server + 1) % len(self.targets)
            return None
        self.cookies.update(answer.cookies)
        return answer

    def _target(self, door: Door) -> Target:
        serving = [target for target in self.targets if target.serves == door.served_by]
        return serving[self.server % len(serving)]

    def _op(
        self,
        door: Door,
        request: Request,
        *,
        kind: str,
        key: str | None,
        origin: int | None = None,
        key_at: float | None = None,
    ) -> Op:
        body = request.body
        if door.key_source == "form" and key is not None:
            # The form's own key and CSRF token travel in its body, as a browser sends them.
            extra = urlencode({KEY_FIELD: key, "csrfmiddlewaretoken": self.csrf})
            body = body + b"&" + extra.encode()
        return self.history.new_op(
            client=self.index,
            user=self.principal.user_id,
            door=door.name,
            kind=kind,
            key=key,
            token=request.token,
            reference=request.reference,
            path=request.path,
            body=body,
            origin=origin,
            key_at=key_at,
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

    async def _attempt(
        self, door: Door, op: Op, *, rotate: bool = False, session: dict[str, str] | None = None
    ) -> Attempt:
        if rotate:
            self.server = (self.server + 1) % len(self.targets)
        target = self._target(door)
        if door.key_source == "form":
            cookies = self._session() if session is None else session
            headers = {**cookies, "Content-Type": "application/x-www-form-urlencoded"}
        else:
            headers = {
                "Authorization": f"{door.auth_scheme} {self.principal.token}",
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
            attempt.problem = problem_code(answer.status, attempt.content_type, answer.body)
            attempt.body = door.record(answer.status, answer.headers, answer.body)
            if op.answer is None and door.is_definite(answer.status, answer.headers):
                op.answer = next(i for i, seen in enumerate(op.attempts) if seen is attempt)
                op.finished = self.history.now()
        attempt.done = self.history.now()
        return attempt


#: The name of the poison task (tests/soak/poison.py, which only the worker imports).
POISON_TASK = "soak.poison"


class Poisoner:
    """Now and then, a task that kills the worker process running it (tests/soak/poison.py),
    published straight to the soak's broker with publisher confirms: the run knows each one
    reached the queue. The checker wants each stored as failed, and the queue's other tasks
    run meanwhile."""

    def __init__(
        self, history: History, broker_url: str, queue: str, task: str, seed: int, every: float = 20
    ) -> None:
        self.history = history
        self.broker_url = broker_url
        self.queue = queue
        self.task = task
        self.every = every
        self.rng = random.Random(f"{seed}-poison")

    async def run(self, until: float) -> None:
        from celery import Celery

        app = Celery(
            "soak-poisoner",
            broker=self.broker_url,
            set_as_current=False,
            broker_transport_options={"confirm_publish": True},
            broker_connection_timeout=5,
        )
        number = itertools.count(1)
        history = self.history
        try:
            while not history.stopping and not history.full:
                pause = self.rng.uniform(0.5, 1.5) * self.every
                if history.now() + pause >= until:
                    break
                await asyncio.sleep(pause)
                task_id = f"soak-poison-{next(number)}-{self.rng.randrange(10**9)}"
                try:
                    await asyncio.to_thread(self._send, app, task_id)
                except Exception as exc:  # the node was down (the nemesis): not sent
                    print(f"soak: poison task not sent ({type(exc).__name__})", flush=True)
                    continue
                history.poison.append(PoisonSent(task_id, history.now()))
        finally:
            app.close()

    def _send(self, app: Any, task_id: str) -> None:
        app.send_task(
            self.task,
            args=[len(self.history.poison)],
            task_id=task_id,
            queue=self.queue,
            retry=False,
        )


ISSUE_PATH = "/api/idempotency-keys/"
LOGIN_PATH = "/accounts/login/"
#: The example project's ``IDEMPOTENCY_ISSUED_KEY_FIELD`` (the default).
KEY_FIELD = "idempotency_key"


def _hidden(page: str, name: str) -> str | None:
    found = re.search(rf'<input type="hidden" name="{re.escape(name)}" value="([^"]*)"', page)
    return html.unescape(found.group(1)) if found else None


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
