"""Helpers of the client and browser tests: the example project under gunicorn for a module,
the soak's fault proxy driven from a test's thread, and a downstream service on loopback whose
answers can be scripted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.e2e.conftest import E2E_DB_PREFIX, _create_database, _drop_database
from tests.e2e.faults.harness import Instance, start_instance
from tests.services import with_database
from tests.soak.proxy import FaultProxy

T = TypeVar("T")

#: The example's gateway takes this long in the client tests: a connection dropped while it
#: runs loses the answer to a request that was performed.
GATEWAY_MS = 400


@contextmanager
def serve_example(
    admin_url: str, template: tuple[str, str], log_dir: Path, **env: str
) -> Iterator[Instance]:
    """The example project under gunicorn (3 workers) on a fresh copy of the e2e template
    database, with ``env`` (EXAMPLE_GATEWAY_DELAY_MS...); stopped and dropped afterwards."""
    name = f"{E2E_DB_PREFIX}{secrets.token_hex(6)}"
    _create_database(admin_url, name, template=template[0])
    instance = None
    try:
        instance = start_instance(
            name="client",
            database_url=with_database(admin_url, name),
            token=template[1],
            log_dir=log_dir,
            delay_ms=int(env.pop("EXAMPLE_GATEWAY_DELAY_MS", "0")),
            workers=3,
            env=env,
        )
        yield instance
    finally:
        if instance is not None:
            instance.stop()
            # Captured by pytest and shown only when a test fails.
            print(f"--- gunicorn ({instance.log_path}) ---\n{instance.log()}")
        _drop_database(admin_url, name)


class ThreadedProxy:
    """A ``FaultProxy`` on its own event loop thread, driven from the test's thread."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(host, port)
        self._await(self.proxy.start())

    @classmethod
    def to(cls, url: str) -> ThreadedProxy:
        """A proxy forwarding to the server at ``url`` (``http://host:port``)."""
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(host, int(port))

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

    def count(self, request_line: bytes) -> Callable[[], int]:
        """Count, from now on, the requests that start with ``request_line`` (``b"POST /x/"``):
        a ``cut_on`` whose match never cuts sees every chunk clients send."""
        seen = [0]

        def tap(chunk: bytes) -> bool:
            seen[0] += chunk.startswith(request_line)
            return False

        self.call(lambda: self.proxy.cut_on(tap))
        return lambda: seen[0]

    def cut(self, request_line: bytes, times: int) -> Callable[[], int]:
        """Drop the next ``times`` requests that start with ``request_line``, each before it
        reaches the server (its connection reset); returns how many were dropped so far."""
        left = [times]

        def match(chunk: bytes) -> bool:
            if not chunk.startswith(request_line):
                return False
            left[0] -= 1
            if left[0] > 0:  # cut_on disarms itself once it matched: arm it again
                asyncio.get_running_loop().call_soon(self.proxy.cut_on, match)
            return True

        self.call(lambda: self.proxy.cut_on(match))
        return lambda: times - left[0]

    def close(self) -> None:
        self._await(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


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


@contextmanager
def running(server: http.server.HTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
