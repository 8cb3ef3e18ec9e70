"""Fixtures of the client helper's tests: the example project under gunicorn (the e2e
fixtures), the fault proxy in front of it, and a scripted downstream service."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

# The e2e fixtures, shared: a migrated template database and the ports.
from tests.e2e.conftest import _release_ports, e2e_admin_url, e2e_template  # noqa: F401
from tests.e2e.faults.harness import Instance

from .support import GATEWAY_MS, Callee, ThreadedProxy, running, serve_example


@pytest.fixture(scope="module")
def example_app(
    e2e_admin_url: str,  # noqa: F811 (the fixture imported above)
    e2e_template: tuple[str, str],  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Instance]:
    """The example project with a slow gateway, shared by a module's tests: each counts the
    rows of its own orders."""
    log_dir = tmp_path_factory.mktemp("client-gunicorn")
    with serve_example(
        e2e_admin_url, e2e_template, log_dir, EXAMPLE_GATEWAY_DELAY_MS=str(GATEWAY_MS)
    ) as instance:
        yield instance


@pytest.fixture
def proxy_to() -> Iterator[Callable[[str], ThreadedProxy]]:
    """``proxy_to(url)``: a fault proxy forwarding to the server at ``url``; closed after."""
    proxies: list[ThreadedProxy] = []

    def start(url: str) -> ThreadedProxy:
        proxies.append(ThreadedProxy.to(url))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def callee() -> Iterator[Callee]:
    server = Callee()
    with running(server):
        yield server
