"""Fixtures of the client helper's tests: the example project under gunicorn (the e2e
fixtures) and the soak's fault proxy in front of it, run on an event loop of its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

# The e2e fixtures, shared: a migrated template database, a fresh copy per test, the ports.
from tests.e2e.conftest import (  # noqa: F401
    _release_ports,
    e2e_admin_url,
    e2e_database_url,
    e2e_template,
)
from tests.e2e.faults.conftest import e2e_token, launch  # noqa: F401
from tests.soak.proxy import FaultProxy

T = TypeVar("T")


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
