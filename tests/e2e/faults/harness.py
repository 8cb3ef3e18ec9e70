"""Helpers of the fault tests: gunicorn instances whose workers can be found and killed, clients
that retry like a careful payment client, and the database checks every test ends with."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.databases import Session
from tests.e2e.conftest import Server
from tests.services import AppServer, free_port, pid_with_local_port

from .figures import Sheet

T = TypeVar("T")
REQUEST_TIMEOUT = 30.0
RECORDS = "django_idempotency_idempotencyrecord"
PROBLEM = "application/problem+json"


# -- servers -------------------------------------------------------------------------------


@dataclass
class Instance:
    """One gunicorn master and its workers: an "app server" of the example project."""

    name: str
    server: Server
    app: AppServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def process(self) -> subprocess.Popen[Any]:
        assert self.app.process is not None
        return self.app.process

    @property
    def log_path(self) -> Path:
        return self.app.log_path

    def worker_pids(self) -> list[int]:
        return self.app.worker_pids()

    def stop(self) -> None:
        self.app.stop()

    def log(self) -> str:
        return self.app.log()


def start_instance(
    *,
    name: str,
    database_url: str,
    token: str,
    log_dir: Path,
    delay_ms: int = 0,
    workers: int = 4,
    env: dict[str, str] | None = None,
) -> Instance:
    """Start the example project under gunicorn and wait until a worker answers."""
    port = free_port()
    app = AppServer(
        name,
        port,
        database_url,
        log_dir / f"gunicorn-{name}-{port}.log",
        {"EXAMPLE_GATEWAY_DELAY_MS": str(delay_ms), **(env or {})},
        workers=workers,
    )
    try:
        app.run()
    except RuntimeError as error:
        app.stop()
        pytest.fail(str(error))
    # A worker imports the URLconf and the views on its first request: done now, on all of them
    # at once, so that no timed request pays for it (on a loaded machine, a copy meant to queue
    # behind a slow original could otherwise reach the database only after the original ended).
    probe = f"{app.url}{app.probe_path}"
    fire_together([lambda: requests.get(probe, timeout=REQUEST_TIMEOUT)] * (2 * workers))
    server = Server(url=app.url, token=token, database_url=database_url)
    return Instance(name=name, server=server, app=app)


def holder_worker(app: Instance, conn: Session) -> tuple[int, int]:
    """The worker whose request sits in an open transaction, and that transaction's session on
    the database server: found through the session's client port and the worker's sockets."""
    [(backend, port)] = wait_for(conn.in_open_transactions)
    worker = pid_with_local_port(port, app.worker_pids())
    assert worker is not None, "no worker of this server owns the holding connection"
    return worker, backend


# -- clients -------------------------------------------------------------------------------


def post(url: str, token: str, path: str, body: Any, key: str) -> requests.Response:
    return requests.post(
        f"{url}{path}",
        json=body,
        headers={"Authorization": f"Token {token}", "Idempotency-Key": key},
        timeout=REQUEST_TIMEOUT,
    )


def fire_together(calls: list[Callable[[], T]]) -> list[T]:
    """Run every call in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(calls), timeout=REQUEST_TIMEOUT)

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=3 * REQUEST_TIMEOUT) for future in futures]


def is_problem(response: requests.Response) -> bool:
    if not response.headers.get("Content-Type", "").startswith(PROBLEM):
        return False
    try:
        document = response.json()
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("status") == response.status_code


def is_replayed(response: requests.Response) -> bool:
    return response.headers.get("Idempotent-Replayed") == "true"


@dataclass
class Tally:
    """Every answer (or dropped connection) clients saw during a test."""

    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    unclean_server_errors: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saw(self, response: requests.Response | None, error: BaseException | None = None) -> None:
        with self.lock:
            self.requests += 1
            if response is None:
                self.dropped += 1
                label = f"no answer ({type(error).__name__})"
            else:
                label = str(response.status_code)
                if is_replayed(response):
                    label += " replayed"
                elif is_problem(response):
                    label += " " + str(response.json().get("type", "")).rpartition("#")[2]
                if response.status_code >= 500:
                    self.server_errors += 1
                    if not is_problem(response):
                        self.unclean_server_errors += 1
                        label += " not problem+json"
            self.statuses[label] = self.statuses.get(label, 0) + 1


def settle(
    urls: list[str],
    token: str,
    path: str,
    body: Any,
    key: str,
    *,
    tally: Tally,
    deadline: float,
) -> requests.Response | None:
    """Send one operation until it gets a final answer, as a careful client would: the same
    key and body every time, another server after a dropped connection or a 5xx, and the
    Retry-After pause after a 409. ``None`` if the deadline passes first."""
    attempt = 0
    while time.monotonic() < deadline:
        url = urls[attempt % len(urls)]
        attempt += 1
        try:
            response = post(url, token, path, body, key)
        except requests.RequestException as exc:
            tally.saw(None, exc)
            time.sleep(0.2)
            continue
        tally.saw(response)
        if response.status_code >= 500:
            time.sleep(0.2)
            continue
        if response.status_code == 409 and "Retry-After" in response.headers:
            time.sleep(min(float(response.headers["Retry-After"]), 1.0))
            continue
        return response
    return None


def new_order(url: str, token: str, key: str) -> int:
    """A fresh order to pay, created under ``key``: its id."""
    response = post(url, token, "/api/orders/", {"item": "x", "quantity": 1}, key)
    assert response.status_code == 201, response.text
    return json_id(response)


@dataclass(frozen=True)
class Payment:
    """A client's payment of one order under one key, sent to one app server."""

    url: str
    token: str
    order: int
    key: str

    @property
    def body(self) -> dict[str, Any]:
        return {"order": self.order, "amount": "25.00"}

    def send(self) -> requests.Response:
        return post(self.url, self.token, "/api/payments/", self.body, self.key)

    def settle(self, tally: Tally, *, seconds: float) -> requests.Response | None:
        """The client's retries until a final answer (see ``settle``)."""
        return settle(
            [self.url],
            self.token,
            "/api/payments/",
            self.body,
            self.key,
            tally=tally,
            deadline=time.monotonic() + seconds,
        )


# -- waiting, in the background and for the database --------------------------------------

FIND_TIMEOUT = 10.0


class Background:
    """One request on its own thread; its answer or its error once it ends."""

    def __init__(self, call: Any) -> None:
        self.response: requests.Response | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Any) -> None:
        try:
            self.response = call()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request never ended"


def wait_for(condition: Any, timeout: float = FIND_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {condition}")


# -- the database afterwards ---------------------------------------------------------------


def scalar(conn: Session, query: str, params: Iterable[Any] = ()) -> Any:
    row = conn.execute(query, list(params)).fetchone()
    assert row is not None
    return row[0]


def in_flight_records(conn: Session) -> int:
    """Records not completed: must be none once every request has ended, crashed or not."""
    return int(scalar(conn, f"SELECT count(*) FROM {RECORDS} WHERE state = 'in_flight'"))


def stored_server_errors(conn: Session) -> int:
    """Stored 5xx answers: a half-result that a retry would get replayed. Must be none."""
    return int(scalar(conn, f"SELECT count(*) FROM {RECORDS} WHERE response_status >= 500"))


def rows_by(conn: Session, query: str) -> dict[Any, int]:
    """``SELECT name, count(*) ... GROUP BY name`` as a dict."""
    return {name: int(count) for name, count in conn.execute(query).fetchall()}


def json_id(response: requests.Response) -> int:
    return int(json.loads(response.content)["id"])


# -- the figures ---------------------------------------------------------------------------


def fill_in_sheet(
    sheet: Sheet, tally: Tally, *, effects: Mapping[Any, int], operations: Collection[Any]
) -> None:
    """Add to the sheet what the clients saw and what came of it: ``effects`` counts the
    business rows per operation (the orders per item, the payments per order ...), and each of
    ``operations`` should have exactly one."""
    sheet.requests += tally.requests
    sheet.operations += len(operations)
    sheet.lost += sum(1 for operation in operations if effects.get(operation, 0) == 0)
    sheet.duplicated += sum(max(0, count - 1) for count in effects.values())
    sheet.server_errors += tally.server_errors
    sheet.unclean_server_errors += tally.unclean_server_errors
    sheet.notes["answers"] = dict(sorted(tally.statuses.items()))
