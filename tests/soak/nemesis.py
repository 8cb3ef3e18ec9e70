"""The nemesis: faults at random moments, drawn from a seeded RNG so a run's schedule can be
replayed with ``--seed``.

Every decision (when, which fault, which target, how long) is drawn in the scheduling loop, in
order, before the fault's task starts; the tasks themselves draw nothing, so concurrent faults
cannot reorder the draws. A fault whose target is busy (a server still restarting) is skipped
and counted, never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

from .proxy import FaultProxy, is_amqp_publish
from .services import AppServer, Services

# Kind -> weight. Window faults (latency, jitter, stall) last seconds; the others are instants
# whose effects (a restart, reconnections) last until the target is back.
WEIGHTS: dict[str, float] = {
    "kill-worker": 18,
    "kill-server": 4,
    "terminate-backend": 18,
    "database-restart-fast": 3,
    "database-restart-immediate": 3,
    "pgbouncer-restart": 5,
    "latency": 10,
    "jitter": 10,
    "stall": 8,
    "reset": 21,
    # The broker's proxies (one for the app's and the relay's publishes, one for the worker):
    # a publish written but never received, its connection reset; any live link reset; the
    # soak's RabbitMQ node SIGKILLed and started again.
    "broker-cut-publish": 8,
    "broker-reset": 4,
    "broker-kill": 3,
    # A server or the worker restarted with its wall clock minutes off, or back to the right
    # time (``Services.clock``).
    "clock-skew": 6,
}
#: Kinds that last a window (their effects end with it, no aftermath).
WINDOWS = ("latency", "jitter", "stall")
#: The skew a ``clock-skew`` fault sets: at least this many seconds, at most ``SKEW_MAX``.
SKEW_MIN, SKEW_MAX = 60.0, 300.0
#: Seconds an armed ``broker-cut-publish`` waits for a publish to cut.
CUT_WAIT = 10.0
#: How long after an instant fault its effects count as "during a fault" for the figures.
AFTERMATH = 2.0


Step = tuple[float, str, float, float, int]


def schedule(
    seed: int, interval: float, weights: Callable[[], dict[str, float]] = lambda: WEIGHTS
) -> Iterator[Step]:
    """The seed's endless fault schedule: (pause before it, kind, target pick in [0, 1),
    length in [0, 1), count 1-3). The same seed and weights give the same schedule; the
    weights are read at each step (a quota's change as kinds reach it), and every step draws
    the same numbers whatever they are."""
    rng = random.Random(f"{seed}-nemesis")
    while True:
        pause = min(rng.expovariate(1 / interval), 4 * interval)
        now = weights()
        kind = rng.choices(list(now), list(now.values()))[0]
        yield pause, kind, rng.random(), rng.random(), 1 + rng.randrange(3)


class NoTarget(Exception):
    """A fault found nothing to act on."""


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0
    detail: str = ""
    #: Whether it has been applied (a restart finished, a window closed): only those count.
    applied: bool = False


@dataclass
class Nemesis:
    seed: int
    services: Services
    proxies: list[FaultProxy]
    now: Callable[[], float]
    wait_ready: Callable[[AppServer], Awaitable[None]]
    #: Mean seconds between faults.
    interval: float = 2.0
    stopping: Callable[[], bool] = lambda: False
    #: Faults of every kind the run must inject (``--faults-per-kind``): until each kind has
    #: as many, the kinds below it are drawn evenly and the others not at all; 0 for none.
    quota: int = 0
    #: The proxy between the app (servers, relay) and RabbitMQ; its faults are skipped without.
    broker: FaultProxy | None = None
    #: The proxy between the worker and RabbitMQ (reset like the other).
    consumer: FaultProxy | None = None
    faults: list[Fault] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _busy: set[str] = field(default_factory=set)

    def counts(self) -> Counter[str]:
        """Faults applied so far, by kind (one still being applied may yet find no target)."""
        return Counter(fault.kind for fault in self.faults if fault.applied)

    def short(self) -> dict[str, int]:
        """How many faults each applicable kind still lacks of the quota."""
        counts = self.counts()
        return {
            kind: self.quota - counts[kind]
            for kind in self.applicable()
            if counts[kind] < self.quota
        }

    def applicable(self) -> list[str]:
        """The kinds this run's services can take (no PgBouncer restart without PgBouncer, no
        clock skew where rows are dated by the app's clock)."""
        database = self.services.database
        absent = {
            "pgbouncer-restart": self.services.bouncer is None,
            "clock-skew": not database.clock_safe,
            "broker-cut-publish": self.broker is None,
            "broker-reset": self.broker is None,
        }
        absent |= {
            f"database-restart-{mode}": mode not in database.restart_modes
            for mode in ("fast", "immediate")
        }
        return [kind for kind in WEIGHTS if not absent.get(kind, False)]

    def below_quota(self) -> list[str]:
        """The applicable kinds with fewer faults than the quota."""
        counts = self.counts()
        return [kind for kind in self.applicable() if counts[kind] < self.quota]

    def _weights(self) -> dict[str, float]:
        needed = self.below_quota()
        return {kind: 1.0 for kind in needed} if needed else WEIGHTS

    async def run(self, until: float) -> None:
        for pause, kind, pick, length, count in schedule(self.seed, self.interval, self._weights):
            if self.now() + pause >= until or self.stopping():
                break
            await asyncio.sleep(pause)
            action = self._action(kind, pick, length, count)
            if action is None:
                self.skipped[kind] += 1
                continue
            task = asyncio.create_task(self._record(kind, action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await self.settle()

    async def settle(self) -> None:
        """Let running faults end (restarts finish, windows close), then heal every proxy."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=180)
        for task in list(self._tasks):
            task.cancel()
        for proxy in (*self.proxies, self.broker, self.consumer):
            if proxy is not None:
                proxy.heal()

    async def _record(self, kind: str, action: Callable[[], Awaitable[str]]) -> None:
        fault = Fault(kind=kind, start=self.now())
        self.faults.append(fault)
        try:
            fault.detail = await action()
            fault.applied = True
        except NoTarget:  # nothing to hit after all (no publish to cut): skipped, not a fault
            self.faults.remove(fault)
            self.skipped[kind] += 1
        except Exception as exc:  # a fault that failed to apply is reported, not counted
            self.faults.remove(fault)
            self.errors.append(f"{kind}: {type(exc).__name__}: {exc}".splitlines()[0])
        finally:
            fault.end = self.now() + (0.0 if kind in WINDOWS else AFTERMATH)

    def _claim(self, name: str) -> bool:
        if name in self._busy:
            return False
        self._busy.add(name)
        return True

    def _action(
        self, kind: str, pick: float, length: float, count: int
    ) -> Callable[[], Awaitable[str]] | None:
        apps = self.services.apps
        if kind == "kill-worker":
            app = apps[int(pick * len(apps))]
            return None if app.name in self._busy else lambda: self._kill_worker(app, length)
        if kind == "kill-server":
            app = apps[int(pick * len(apps))]
            # One server down at a time: the other keeps serving while this one restarts.
            if any(other.name in self._busy for other in apps) or not self._claim(app.name):
                return None
            return lambda: self._restart_server(app)
        if kind == "terminate-backend":
            return lambda: self._terminate(pick, count)
        if kind.startswith("database-restart"):
            mode = kind.rsplit("-", 1)[1]
            if mode not in self.services.database.restart_modes or not self._claim("database"):
                return None
            return lambda: self._restart_database(mode)
        if kind == "pgbouncer-restart":
            if self.services.bouncer is None or not self._claim("pgbouncer"):
                return None
            return self._restart_bouncer
        if kind == "clock-skew":
            if not self.services.database.clock_safe:
                return None  # rows dated by the app's clock: a skew would fool the checker
            app = apps[int(pick * len(apps))]
            if any(other.name in self._busy for other in apps) or not self._claim(app.name):
                return None
            # A right clock goes ahead or behind (the draw's parity) by SKEW_MIN..SKEW_MAX; a
            # skewed one comes back.
            sign = 1 if count % 2 else -1
            offset = sign * (SKEW_MIN + (SKEW_MAX - SKEW_MIN) * length)
            return lambda: self._skew(app, offset)
        if kind == "broker-kill":
            if not self._claim("broker"):
                return None
            return self._restart_broker
        if kind.startswith("broker-"):
            broker = self.broker
            if broker is None:
                return None
            if kind == "broker-reset":
                links = [proxy for proxy in (broker, self.consumer) if proxy is not None]
                return lambda: self._reset(links[int(pick * len(links))], count)
            if not self._claim("broker-cut"):
                return None
            return lambda: self._cut_publish(broker)
        proxy = self.proxies[int(pick * len(self.proxies))]
        if kind == "reset":
            return lambda: self._reset(proxy, count)
        if not self._claim(f"proxy{proxy.port}"):
            return None
        if kind == "latency":
            return lambda: self._window(proxy, 1.5 + 4 * length, latency=0.005 + 0.045 * pick)
        if kind == "jitter":
            return lambda: self._window(proxy, 1.5 + 4 * length, jitter=0.02 + 0.15 * pick)
        return lambda: self._window(proxy, 0.5 + 2.5 * length, stall=True)

    # -- the faults ---------------------------------------------------------------------------

    async def _kill_worker(self, app: AppServer, pick: float) -> str:
        workers = [pid for pid in app.worker_pids() if not _is_resource_tracker(pid)]
        if not workers:
            raise NoTarget(f"{app.name}: no worker")
        pid = workers[int(pick * len(workers))]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return f"{app.name} worker {pid}"

    async def _restart_server(self, app: AppServer) -> str:
        try:
            await asyncio.to_thread(app.kill)
            app.start()
            app.restarts += 1
            await self.wait_ready(app)
            return f"{app.name} killed and restarted"
        finally:
            self._busy.discard(app.name)

    async def _terminate(self, pick: float, count: int) -> str:
        database = self.services.database
        chosen = await asyncio.to_thread(database.terminate, "shop", pick, count)
        if not chosen:
            raise NoTarget("no session to end")
        return f"{len(chosen)} sessions"

    async def _restart_database(self, mode: str) -> str:
        try:
            await asyncio.to_thread(self.services.database.restart, mode)
            return f"{self.services.database.vendor} {mode}"
        finally:
            self._busy.discard("database")

    async def _restart_bouncer(self) -> str:
        bouncer = self.services.bouncer
        assert bouncer is not None
        try:
            await asyncio.to_thread(bouncer.kill)
            await asyncio.to_thread(bouncer.start)
            return "killed and restarted"
        finally:
            self._busy.discard("pgbouncer")

    async def _restart_broker(self) -> str:
        try:
            await asyncio.to_thread(self.services.broker.restart)
            return "RabbitMQ node killed (SIGKILL) and restarted"
        finally:
            self._busy.discard("broker")

    async def _skew(self, app: AppServer, offset: float) -> str:
        clock = self.services.clock(app.name)
        clock.offset = 0.0 if clock.offset else offset
        app.env.update(clock.env())
        try:
            await asyncio.to_thread(app.kill)
            app.start()
            app.restarts += 1
            await self.wait_ready(app)
            return f"{app.name} restarted with its clock {clock.offset:+.0f} s"
        finally:
            self._busy.discard(app.name)

    async def _reset(self, proxy: FaultProxy, count: int) -> str:
        reset = proxy.reset(count)
        if not reset:
            raise NoTarget(f"no connection on :{proxy.port}")  # the node down, say
        return f"{reset} connections on :{proxy.port}"

    async def _cut_publish(self, proxy: FaultProxy) -> str:
        """The next publish's bytes are written and dropped, its connection reset: the
        publisher's write succeeded, RabbitMQ never saw the message."""
        try:
            proxy.cut_on(is_amqp_publish)
            waited = 0.0
            while proxy.cut_pending and waited < CUT_WAIT and not self.stopping():
                await asyncio.sleep(0.05)
                waited += 0.05
            if proxy.cut_pending:
                proxy.cancel_cut()
                raise NoTarget(f"no publish within {waited:.0f}s")
            return f"a publish cut after {waited:.2f}s on :{proxy.port}"
        finally:
            self._busy.discard("broker-cut")

    async def _window(self, proxy: FaultProxy, seconds: float, **fault: Any) -> str:
        try:
            if fault.get("stall"):
                proxy.stall()
            else:
                proxy.set_delay(fault.get("latency", 0.0), fault.get("jitter", 0.0))
            await asyncio.sleep(seconds)
            described = ", ".join(f"{k}={v:.3f}" for k, v in fault.items() if k != "stall")
            return f":{proxy.port} {seconds:.1f}s {described}".rstrip()
        finally:
            proxy.heal()
            self._busy.discard(f"proxy{proxy.port}")


def _is_resource_tracker(pid: int) -> bool:
    """Whether ``pid`` is multiprocessing's resource tracker (a child of uvicorn's master next to
    its workers), which serves nothing: killing it is no fault."""
    try:
        return "resource_tracker" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return True  # gone already: nothing to kill either
