"""The soak's command line: how long it runs, and where it stops."""

from __future__ import annotations

import argparse

import pytest

from .run import parse, seconds
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
