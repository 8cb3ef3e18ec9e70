"""``IDEMPOTENCY_METRICS``: its checks, an observer of one's own, and the setting's changes
taking effect at once."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_idempotency.core import observers
from django_idempotency.core.observers import Labels
from django_idempotency.once import run_once


def ids(**settings: Any) -> list[tuple[str, str]]:
    with override_settings(**settings):
        return [(m.id or "", m.msg) for m in run_checks() if "IDEMPOTENCY_METRICS" in m.msg]


@pytest.mark.parametrize(
    ("name", "library"),
    [("prometheus", "prometheus_client"), ("opentelemetry", "opentelemetry.metrics")],
)
def test_an_exporter_whose_library_is_missing_stops_the_project(
    monkeypatch: pytest.MonkeyPatch, name: str, library: str
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # how Python spells "not installed"
    found = ids(IDEMPOTENCY_METRICS=[name])
    assert [code for code, _ in found] == ["django_idempotency.E026"]
    assert f"{library} is not installed" in found[0][1]


def test_an_observer_path_that_does_not_import_stops_the_project() -> None:
    found = ids(IDEMPOTENCY_METRICS=["myproject.metrics.Nowhere"])
    assert [code for code, _ in found] == ["django_idempotency.E026"]


def test_installed_exporters_and_an_importable_observer_pass() -> None:
    path = f"{__name__}.Recorder"
    assert ids(IDEMPOTENCY_METRICS=["prometheus", "opentelemetry", path]) == []


class Recorder:
    """An observer of one's own: what the engine told it."""

    seen: list[tuple[str, ...]] = []

    def span(self, name: str, labels: Labels) -> Any:
        self.seen.append(("span", name, labels.door, labels.scope))
        return nullcontext()

    def outcome(self, name: str, labels: Labels) -> None:
        self.seen.append(("outcome", name))

    def waited(self, labels: Labels, seconds: float) -> None:
        self.seen.append(("waited",))

    def backlog(self, database: str, values: Mapping[str, float]) -> None:
        self.seen.append(("backlog", database))


@pytest.mark.django_db(transaction=True)
def test_an_observer_of_ones_own_is_told_and_a_change_of_the_setting_is_seen_at_once() -> None:
    Recorder.seen.clear()
    with override_settings(IDEMPOTENCY_METRICS=[f"{__name__}.Recorder"]):
        run_once(lambda: 1, scope="own|user:1", key="k")
        run_once(lambda: 1, scope="own|user:1", key="k")
    run_once(lambda: 1, scope="own|user:1", key="other")  # off again: nothing told

    assert Recorder.seen == [
        ("span", "claim", "once", "own"),
        ("span", "view", "once", "own"),
        ("span", "store", "once", "own"),
        ("outcome", "stored"),
        ("span", "claim", "once", "own"),
        ("span", "replay", "once", "own"),
        ("outcome", "replayed"),
    ]
    assert observers.observers() == ()


def test_a_scope_stored_as_its_digest_is_labelled_by_one_value() -> None:
    from django_idempotency.core.references import storable
    from django_idempotency.once.operations import operation

    long = storable("payments-" + "x" * 300 + "|user:7")
    assert long.startswith("sha256:")
    assert Labels.of(operation(scope=long, key="k", fingerprint="f")).scope == "sha256"
    assert Labels.of(operation(scope="order-list|user:7", key="k", fingerprint="f")).scope == (
        "order-list"
    )


@pytest.mark.django_db(transaction=True)
def test_an_exporter_is_made_once_whatever_list_names_it(otel: Any) -> None:
    """OpenTelemetry keeps the first instrument of a name: a second adapter's gauge callbacks
    would never be read, and the gauges would show the first one's last values for ever."""
    from tests.metrics.conftest import Readings

    readings = Readings(otel)
    for metrics, found in ((["opentelemetry"], 1.0), (["prometheus", "opentelemetry"], 2.0)):
        with override_settings(IDEMPOTENCY_METRICS=metrics):
            observers.report_backlog("default", {"outbox_parked_messages": found})
        assert (
            readings.gauge(
                "django_idempotency_outbox_parked_messages", "idempotency.outbox.parked", "default"
            )[1]
            == found
        )


@pytest.mark.django_db(transaction=True)
def test_a_string_for_the_setting_breaks_no_operation(caplog: pytest.LogCaptureFixture) -> None:
    """Check E002 refuses it, but gunicorn runs no checks: then nothing is measured."""
    with override_settings(IDEMPOTENCY_METRICS="prometheus"):
        assert run_once(lambda: 1, scope="typo", key="k") == 1
        assert observers.observers() == ()
    assert "IDEMPOTENCY_METRICS" in caplog.text
