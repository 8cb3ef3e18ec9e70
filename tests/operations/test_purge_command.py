"""``manage.py idempotency_purge`` through call_command, and once as a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_idempotency.models import IdempotencyEvent, IdempotencyRecord
from tests.operations.test_purge import NOW, events_for, orphan_events, records

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def purge(*args: str, **options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("idempotency_purge", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_purges_in_batches_with_a_progress_line_each_and_a_summary() -> None:
    expired = records(250, expired=True)
    live = records(10, expired=False)
    events_for(expired[:30])

    out, _ = purge("--batch-size", "100")

    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["batch 1", "batch 2", "batch 3"]
    assert lines[0].startswith("batch 1: 100 records and 30 events deleted so far")
    assert lines[2].startswith("batch 3: 250 records and 30 events deleted so far")
    assert len(lines) == 4
    assert re.fullmatch(
        r"Deleted 250 expired records and 30 events in 3 batches on database 'default' "
        r"\(\d+\.\d\ds, \d+ records/s\)\.",
        lines[3],
    ), lines[3]
    assert set(IdempotencyRecord.objects.values_list("pk", flat=True)) == {r.pk for r in live}
    assert not IdempotencyEvent.objects.exists()


def test_a_one_batch_run_prints_only_the_summary() -> None:
    records(5, expired=True)

    out, _ = purge()

    assert out.splitlines() == [out.strip()]
    assert out.startswith("Deleted 5 expired records and 0 events in 1 batch on")


def test_verbosity_two_shows_every_batch_and_zero_is_silent() -> None:
    records(5, expired=True)
    out, _ = purge("--dry-run", verbosity=0)
    assert out == ""

    out, _ = purge(verbosity=2)
    assert out.splitlines()[0].startswith("batch 1: 5 records")
    assert out.splitlines()[1].startswith("Deleted 5 expired records")


def test_dry_run_counts_only() -> None:
    expired = records(42, expired=True)
    records(3, expired=False)
    events_for(expired[:2])
    orphan_events(1, expired=True)

    out, _ = purge("--dry-run", "--batch-size", "10")

    assert out.strip() == (
        "Dry run on database 'default': 42 expired records and 3 events would be deleted."
    )
    assert IdempotencyRecord.objects.count() == 45
    assert IdempotencyEvent.objects.count() == 3


def test_older_than_and_scope() -> None:
    old_orders = records(
        4, expired=False, scope="order-list|auth.user:1", created_at=NOW - timedelta(days=9)
    )
    old_payments = records(
        6, expired=False, scope="payment-list|auth.user:1", created_at=NOW - timedelta(days=9)
    )
    records(2, expired=False, scope="payment-list|auth.user:1", created_at=NOW)

    out, _ = purge("--older-than", "1w", "--scope", "payment-list|", "--database", "default")

    assert out.startswith("Deleted 6 expired records")
    remaining = set(IdempotencyRecord.objects.values_list("pk", flat=True))
    assert {r.pk for r in old_orders} <= remaining
    assert not remaining & {r.pk for r in old_payments}
    assert len(remaining) == 6


@pytest.mark.django_db(databases=["default", "other"])
def test_database_option_picks_the_alias() -> None:
    records(3, expired=True, using="other")
    records(2, expired=True)

    out, _ = purge("--database", "other")

    assert out.startswith("Deleted 3 expired records and 0 events in 1 batch on database 'other'")
    assert IdempotencyRecord.objects.using("other").count() == 0
    assert IdempotencyRecord.objects.count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size: must be at least 1, not 0."),
        (["--batch-size", "-3"], "--batch-size: must be at least 1, not -3."),
        (["--older-than", "soon"], "--older-than: 'soon' is not an age"),
        (["--older-than", "0d"], "--older-than: '0d' is not a positive age."),
        (["--database", "nope"], "--database: unknown database 'nope'; configured: default"),
        (["--scope", "  "], "--scope: give a non-empty prefix"),
    ],
)
def test_bad_arguments_are_command_errors(args: list[str], message: str) -> None:
    records(3, expired=True)
    with pytest.raises(CommandError) as raised:
        purge(*args)
    assert str(raised.value).startswith(message), str(raised.value)
    assert IdempotencyRecord.objects.count() == 3


def test_an_unparsable_batch_size_is_refused_by_the_parser() -> None:
    with pytest.raises(CommandError, match=r"--batch-size: .many. is not a whole number"):
        purge("--batch-size=many")


def test_a_batch_size_given_as_an_option_is_checked_too() -> None:
    with pytest.raises(CommandError, match="'many' is not a whole number"):
        purge(batch_size="many")


def test_exit_codes_of_the_real_command(tmp_path: Path) -> None:
    """The command as cron runs it: exit 0 with a summary, exit 1 and a message on stderr."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "--verbosity", "0").returncode == 0
    ok = manage("idempotency_purge", "--older-than", "7d")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("Deleted 0 expired records and 0 events in 0 batches")

    bad = manage("idempotency_purge", "--older-than", "soon")
    assert bad.returncode == 1
    assert "CommandError: --older-than: 'soon' is not an age" in bad.stderr
