"""The soak's pieces that need no servers: its fault schedule and its section of the docs."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .checker import Verdict
from .nemesis import WEIGHTS, Fault, schedule
from .report import BEGIN, END, CpuUse, Run, markdown, markers, write_section
from .services import REPO_ROOT
from .workload import Attempt, Op


def test_the_same_seed_gives_the_same_fault_schedule() -> None:
    first = list(itertools.islice(schedule(42, 2.4), 300))
    assert first == list(itertools.islice(schedule(42, 2.4), 300))
    assert first != list(itertools.islice(schedule(43, 2.4), 300))
    assert {step[1] for step in first} == set(WEIGHTS)  # every kind comes up


def test_the_section_replaces_only_itself(tmp_path: Path) -> None:
    docs = tmp_path / "reliability.md"
    docs.write_text("# Reliability figures\n\nkept\n")
    write_section(docs, f"{BEGIN}\nfirst\n{END}")
    docs.write_text(docs.read_text() + "\nafter\n")
    write_section(docs, f"{BEGIN}\nsecond\n{END}")
    text = docs.read_text()
    assert text.startswith("# Reliability figures\n\nkept\n")
    assert "second" in text
    assert "first" not in text
    assert text.rstrip().endswith("after")


def test_the_reliability_report_carries_the_soak_section_over(tmp_path: Path) -> None:
    figures = tmp_path / "figures.jsonl"
    figures.write_text(
        '{"test": "t", "section": "Security", "what": "w", "run": "r", "outcome": "passed",'
        ' "at": "2026-01-01T00:00:00+00:00", "database": "postgresql", "seconds": 1,'
        ' "requests": 1, "processes_killed": 0, "faults_injected": 0, "inputs_tried": 0,'
        ' "operations": 0, "lost": 0, "duplicated": 0, "server_errors": 0,'
        ' "unclean_server_errors": 0, "stuck_records": 0}\n'
    )
    docs = tmp_path / "reliability.md"
    mariadb = "\n".join(markers("MariaDB")).replace("\n", "\nmariadb figures\n")
    notes = "<!-- soak-notes:begin -->\nby hand\n<!-- soak-notes:end -->"
    docs.write_text(f"# old\n\n{BEGIN}\nsoak figures\n{END}\n\n{mariadb}\n\n{notes}\n")
    subprocess.run(
        [
            sys.executable,
            "scripts/reliability_report.py",
            "--figures",
            str(figures),
            "--output",
            str(docs),
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    text = docs.read_text()
    assert "# old" not in text
    assert f"{BEGIN}\nsoak figures\n{END}" in text
    assert mariadb in text
    assert notes in text


def test_a_run_on_mariadb_has_a_section_of_its_own(tmp_path: Path) -> None:
    docs = tmp_path / "reliability.md"
    write_section(docs, f"{BEGIN}\npostgresql\n{END}")
    begin, end = markers("MariaDB")
    write_section(docs, f"{begin}\nfirst\n{end}", "MariaDB")
    write_section(docs, f"{begin}\nsecond\n{end}", "MariaDB")
    text = docs.read_text()
    assert "postgresql" in text
    assert "second" in text
    assert "first" not in text


def test_the_section_shows_seed_commit_latency_and_faults() -> None:
    op = Op(
        id=1,
        client=0,
        user=1,
        door="orders",
        kind="new",
        key="k1",
        token="o1",
        reference=None,
        path="/api/orders/",
        body=b"{}",
        origin=None,
        started=1.0,
    )
    op.attempts = [Attempt(server="a", sent=1.0, done=1.2, status=201, body=b'{"id": 1}')]
    op.answer, op.finished = 0, 1.2
    calm = Op(**{**op.__dict__, "id": 2, "started": 20.0, "attempts": list(op.attempts)})
    calm.finished = 20.1
    run = Run(
        seed=7,
        commit="abc1234",
        started_at="2026-01-01 00:00",
        duration=30.0,
        clients=2,
        ttl=45.0,
        cpus=2,
        ops=[op, calm],
        faults=[Fault("reset", 0.5, 2.5, "1 connections")],
        skipped=Counter({"stall": 1}),
        verdict=Verdict(counts={"operations": 2}),
        purged=3,
        setup_seconds=1.0,
    )
    text = markdown(run)
    assert text.startswith(BEGIN)
    assert text.endswith(END)
    assert "seed `7`" in text
    assert "`abc1234`" in text
    assert "| orders | yes | 1 | 200 | 200 |" in text  # during the reset's window
    assert "| orders | no | 1 | 100 | 100 |" in text
    assert "| reset | 1 | 0 |" in text
    assert "| stall | 0 | 1 |" in text
    assert "30 s of load" in text
    # A run that stopped at its operation count, on MariaDB: said so, and how to replay it.
    full = dataclasses.replace(
        run, operations_limit=2, planned=2400.0, database="MariaDB", pooled=False
    )
    text = markdown(full)
    assert text.startswith(markers("MariaDB")[0])
    assert "30 s of load, until its 2 operations" in text
    assert 'ARGS="--seed=7 --database=mariadb --duration=2400 --operations=2"' in text
    assert "PgBouncer" not in text
    assert "the worker and MariaDB." in text
    # A fault quota: the section says what the run made of it, not what it was asked.
    quota = dataclasses.replace(full, fault_quota=300, fault_kinds=["reset", "stall"], interval=0.5)
    text = markdown(quota)
    assert "for 2 operations and 300 faults of every kind" in text
    assert "at least 0 of every kind" in text  # no stall at all
    assert "--faults-per-kind=300 --interval=0.5" in text


def test_cpu_use_counts_the_soak_process_own_time() -> None:
    before = CpuUse.now()
    spin_until = before.harness + 0.2
    while CpuUse.now().harness < spin_until:
        pass
    used = CpuUse.now() - before
    assert used.harness >= 0.19  # ticks of 10 ms, subtracted as floats
    # The machine's busy time is sampled by other clocks: compare loosely.
    assert 0.0 < used.harness_share <= 1.0
    assert used.busy > 0.1
