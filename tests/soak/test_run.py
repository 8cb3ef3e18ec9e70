"""The soak's command line: how long it runs, and where it stops."""

from __future__ import annotations

import argparse
import itertools

import pytest

from .nemesis import WEIGHTS, Fault, Nemesis, schedule
from .run import parse, seconds
from .services import Services
from .workload import History


def test_a_duration_takes_seconds_minutes_or_hours() -> None:
    assert seconds("90") == 90
    assert seconds("90s") == 90
    assert seconds("40m") == 2400
    assert seconds("1.5h") == 5400
    for wrong in ("", "m", "forty", "-5m", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            seconds(wrong)


def test_the_full_length_run_stops_at_its_operation_count() -> None:
    args = parse(["--duration=40m", "--operations=3"])
    assert (args.duration, args.operations) == (2400, 3)
    history = History(0.0, max_ops=args.operations)
    for _ in range(2):
        history.new_op(**_fields())
    assert not history.full
    history.new_op(**_fields())
    assert history.full
    assert not History(0.0).full  # no count: only the duration ends it


def test_a_fault_quota_draws_only_the_kinds_below_it_and_holds_the_load_until_they_are_in() -> None:
    assert parse(["--faults-per-kind=300"]).faults_per_kind == 300
    services = Services("postgresql")  # made, not started: the nemesis only reads its shape
    try:
        nemesis = Nemesis(
            seed=7, services=services, proxies=[], now=lambda: 0.0, wait_ready=_never, quota=2
        )
        # No PgBouncer here (none started): the quota does not wait for its restarts.
        assert "pgbouncer-restart" not in nemesis.applicable()
        history = History(0.0, max_ops=1, more_faults=lambda: bool(nemesis.below_quota()))
        history.new_op(**_fields())
        assert not history.full  # the operations are in, the faults are not
        for kind in nemesis.applicable():
            nemesis.faults += [Fault(kind, 0.0, applied=True)] * (1 if kind == "stall" else 2)
        drawn = {step[1] for step in itertools.islice(schedule(7, 1.0, nemesis._weights), 200)}
        assert drawn == {"stall"}  # the one kind still short of its two
        assert nemesis.short() == {"stall": 1}
        # One being applied is not in yet (it may find no target): the load goes on meanwhile,
        # so a fault that waits for traffic (a publish to cut) still gets some.
        nemesis.faults.append(Fault("stall", 0.0))
        assert not history.full
        nemesis.faults[-1].applied = True
        assert history.full
        assert nemesis.short() == {}
        # Every kind in: the usual weights again.
        drawn = {step[1] for step in itertools.islice(schedule(7, 1.0, nemesis._weights), 300)}
        assert drawn == set(WEIGHTS)
    finally:
        services.close()


async def _never(_app: object) -> None:
    raise AssertionError("no server is started here")


def _fields() -> dict[str, object]:
    return {
        "client": 0,
        "user": 1,
        "door": "orders",
        "kind": "new",
        "key": "k",
        "token": "o1",
        "reference": None,
        "path": "/api/orders/",
        "body": b"{}",
        "origin": None,
    }
