"""The quick soak (90 s of randomized faults) as part of the suite: CI runs it on every change.

It runs in its own process (``python -m tests.soak --quick``), which starts and stops its own
PostgreSQL cluster, PgBouncer, proxies and gunicorn instances; the seed it prints replays it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from .services import REPO_ROOT

# The soak's own setup (initdb, migrate, two servers) plus 90 s of load, with room to spare on a
# loaded machine; past it the run is asked to stop (SIGTERM), so it still cleans up.
TIMEOUT = 420


@pytest.mark.e2e
def test_quick_soak_finds_no_violation() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.soak", "--quick"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=120)
        pytest.fail(f"the quick soak did not finish within {TIMEOUT}s:\n{output}")
    print(output)
    assert process.returncode == 0, output
    assert "verdict: OK" in output
