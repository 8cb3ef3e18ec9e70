"""Fixtures of the client helper's tests: the example project under gunicorn (the e2e
fixtures) and the soak's fault proxy in front of it, run on an event loop of its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

# The e2e fixtures, shared: a migrated template database and the ports.
from tests.e2e.conftest import (  # noqa: F401
    E2E_DB_PREFIX,
    _create_database,
    _drop_database,
    _release_ports,
    _with_database,
    e2e_admin_url,
    e2e_template,
)
from tests.e2e.faults.harness import Instance, start_instance
from tests.soak.proxy import FaultProxy

T = TypeVar("T")

#: The example's gateway takes this long: a connection dropped while it runs loses the answer
#: to a request that was performed.
GATEWAY_MS = 400


@pytest.fixture(scope="module")
def example_app(
    e2e_admin_url: str,  # noqa: F811 (the fixture imported above)
    e2e_template: tuple[str, str],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Instance]:
    """The example project under gunicorn (3 workers, a slow gateway) on a copy of the
    template database, shared by a module's tests: each counts the rows of its own orders."""
    template, token = e2e_template
    name = f"{E2E_DB_PREFIX}{secrets.token_hex(6)}"
    _create_database(e2e_admin_url, name, template=template)
    instance = None
    try:
        instance = start_instance(
            name="client",
            database_url=_with_database(e2e_admin_url, name),
            token=token,
            log_dir=tmp_path_factory.mktemp("client-gunicorn"),
            delay_ms=GATEWAY_MS,
            workers=3,
        )
        yield instance
    finally:
        if instance is not None:
            instance.stop()
            print(f"--- gunicorn ({instance.log_path}) ---\n{instance.log()}")
        _drop_database(e2e_admin_url, name)


class ThreadedProxy:
    """A ``FaultProxy`` on its own event loop thread, driven from the test's thread."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(host, port)
        self._await(self.proxy.start())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    def _await(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)  # type: ignore[arg-type]

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` (a fault: ``proxy.reset``, ``proxy.cut_on``...) on the loop."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as error:  # handed to the caller
                future.set_exception(error)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def close(self) -> None:
        self._await(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], ThreadedProxy]]:
    """``proxy_to(url)``: a fault proxy forwarding to the server at ``url``; closed after."""
    proxies: list[ThreadedProxy] = []

    def start(url: str) -> ThreadedProxy:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        proxies.append(ThreadedProxy(host, int(port)))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


#: A scripted answer: (status, headers, body), or ``None`` to close the connection unanswered.
Answer = tuple[int, dict[str, str], bytes] | None


class Callee(http.server.ThreadingHTTPServer):
    """A downstream service on loopback that deduplicates by Idempotency-Key, like a gateway:
    ``performed`` numbers the keys it performed, ``seen`` lists every key it was sent. The
    answers in ``script`` come first, one per request (a fault, a refusal)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CalleeHandler)
        self.performed: dict[str, int] = {}
        self.seen: list[str | None] = []
        #: When each request arrived (wall clock, as Retry-After dates are).
        self.arrivals: list[float] = []
        self.script: list[Answer] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, key: str | None) -> Answer:
        with self.lock:
            self.seen.append(key)
            self.arrivals.append(time.time())
            if self.script:
                return self.script.pop(0)
            if key is not None and key not in self.performed:
                self.performed[key] = len(self.performed) + 1
            body = json.dumps({"charge": self.performed.get(key or "", 0)}).encode()
        return 201, {"Content-Type": "application/json"}, body


class _CalleeHandler(http.server.BaseHTTPRequestHandler):
    server: Callee

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = self.server.answer(self.headers.get("Idempotency-Key"))
        if answer is None:
            self.close_connection = True
            self.connection.close()  # no answer at all: the client's read fails
            return
        status, headers, body = answer
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def callee() -> Iterator[Callee]:
    server = Callee()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
