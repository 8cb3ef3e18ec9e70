"""The figures of the reliability suite: each test appends one JSON line to a file, and
``scripts/reliability_report.py`` renders the newest line per test into docs/reliability.md.

A test does its work and its assertions inside ``with measure(...) as sheet:`` and fills in the
sheet as it goes, so a failing test still leaves its figures (marked failed) behind.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.databases import is_mariadb, label, mysql_isolation

REPO_ROOT = Path(__file__).resolve().parents[3]
FIGURES_ENV = "IDEMPOTENCY_FIGURES"
# One pytest process is one run; the report shows the figures of a single run.
RUN = os.environ.get("IDEMPOTENCY_FIGURES_RUN") or (
    f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}"
)
DEFAULT_FIGURES_PATH = REPO_ROOT / "build" / "reliability" / "figures.jsonl"

# Sections of the report, in the order it shows them.
E2E = "End to end, over HTTP, on real processes"
FAULTS = "Crashes, database faults and connection pooling"
HOSTILE = "Hostile and malformed input"
SECURITY = "Security"


@dataclass
class Sheet:
    """What one test did and what came of it. Counts start at zero and only ever grow."""

    test: str
    section: str
    what: str
    requests: int = 0
    processes_killed: int = 0
    faults_injected: int = 0
    inputs_tried: int = 0
    #: Operations whose effect should exist after the test (one business row each).
    operations: int = 0
    #: Operations acknowledged (or retried to success) whose effect is missing.
    lost: int = 0
    #: Effects beyond the first for one operation (a second order for one key ...).
    duplicated: int = 0
    #: Answers with a 5xx status, and how many of those were not problem+json.
    server_errors: int = 0
    unclean_server_errors: int = 0
    #: Records left in flight once everything settled.
    stuck_records: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def figures_path() -> Path:
    return Path(os.environ.get(FIGURES_ENV) or DEFAULT_FIGURES_PATH)


def database_label() -> str:
    """``postgresql``, ``sqlite``, or ``mariadb`` with the isolation level of the run."""
    url = os.environ.get("DATABASE_URL", "")
    if is_mariadb(url):
        return f"{label(url)}, {mysql_isolation()}"
    return label(url) if url.startswith("postgres") else "sqlite"


@contextmanager
def measure(test: str, *, section: str, what: str) -> Iterator[Sheet]:
    """Time the block and append its sheet to the figures file, whatever the outcome."""
    sheet = Sheet(test=test, section=section, what=what)
    started = time.monotonic()
    outcome = "failed"
    try:
        yield sheet
        outcome = "passed"
    finally:
        write(sheet, outcome=outcome, seconds=time.monotonic() - started)


def write(sheet: Sheet, *, outcome: str, seconds: float) -> None:
    line = {
        **asdict(sheet),
        "run": RUN,
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": database_label(),
        "python": platform.python_version(),
    }
    path = figures_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one line: concurrent test processes cannot interleave inside it.
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, sort_keys=True, default=str) + "\n")
