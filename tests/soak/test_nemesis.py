"""The nemesis counts only faults that hit something."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from multiprocessing import resource_tracker

import pytest

from .nemesis import Nemesis, NoTarget, _is_resource_tracker
from .proxy import FaultProxy
from .services import Services


def test_multiprocessing_s_resource_tracker_is_no_worker_to_kill() -> None:
    # uvicorn's master has one next to its workers; a kill of it served nothing. A tracker of
    # the test's own (the process-wide one may be shared with, or stopped by, other tests).
    tracker = resource_tracker.ResourceTracker()
    tracker.ensure_running()
    try:
        pid = tracker._pid  # type: ignore[attr-defined]
        assert pid is not None
        # Forked, then exec'd: until the exec its command line is still this process's.
        deadline = time.monotonic() + 10
        while not _is_resource_tracker(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _is_resource_tracker(pid)
        assert not _is_resource_tracker(os.getpid())
    finally:
        tracker._stop()  # type: ignore[attr-defined]
    child = multiprocessing.get_context("spawn").Process(target=_idle)
    child.start()
    try:
        assert child.pid is not None
        assert not _is_resource_tracker(child.pid)
    finally:
        child.kill()
        child.join()


def test_a_reset_with_no_connection_to_reset_is_no_fault() -> None:
    services = Services("postgresql")  # made, not started
    proxy = FaultProxy("127.0.0.1", 1)
    try:
        nemesis = Nemesis(
            seed=1, services=services, proxies=[proxy], now=lambda: 1.0, wait_ready=_never
        )
        with pytest.raises(NoTarget):
            asyncio.run(nemesis._reset(proxy, 2))
        action = nemesis._action("reset", 0.0, 0.0, 2)
        assert action is not None
        asyncio.run(nemesis._record("reset", action))
        assert nemesis.faults == []
        assert nemesis.skipped["reset"] == 1
    finally:
        services.close()


def _idle() -> None:
    time.sleep(30)


async def _never(_app: object) -> None:
    raise AssertionError("no server is started here")
