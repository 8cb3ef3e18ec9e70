"""``/metrics`` of the example project under gunicorn (4 workers, ``PROMETHEUS_MULTIPROC_DIR``)
after a small storm over HTTP: the outcomes it shows are what the database recorded."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.services import AppServer, free_port

from .conftest import Server, _start
from .test_gunicorn import post, post_all_at_once

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Path:
    path = tmp_path / "prometheus"
    path.mkdir()
    return path


@pytest.fixture
def metrics_server(
    e2e_database_url: str, e2e_template: tuple[str, str], tmp_path: Path, multiproc_dir: Path
) -> Iterator[Server]:
    _, token = e2e_template
    env = {"EXAMPLE_METRICS": "prometheus", "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    server = AppServer("gunicorn", free_port(), e2e_database_url, tmp_path / "gunicorn.log", env)
    try:
        yield _start(server, token)
    finally:
        server.stop()
        print(f"--- gunicorn log ({server.log_path}) ---\n{server.log()}")


def scrape(server: Server) -> dict[str, float]:
    """``django_idempotency_outcomes_total`` of the order endpoint, by outcome."""
    response = requests.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    found: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "django_idempotency_outcomes_total"
                and labels["scope"] == "order-list"
            ):
                assert labels["door"] == "drf"
                found[labels["outcome"]] += sample.value
    return found


def test_metrics_after_a_storm_count_what_the_database_recorded(
    metrics_server: Server, multiproc_dir: Path
) -> None:
    # Six keys, five copies each at once; then another body twice under the first key.
    fired = [({"item": f"item {n}", "quantity": 1}, f"m-{n}") for n in range(6) for _ in range(5)]
    responses = post_all_at_once(metrics_server, "/api/orders/", fired)
    late = [({"item": "another", "quantity": 9}, "m-0")] * 2
    responses += [post(metrics_server, "/api/orders/", body, key) for body, key in late]
    statuses = [response.status_code for response in responses]
    assert 500 not in statuses, statuses

    counted = scrape(metrics_server)

    with metrics_server.connect() as conn:
        stored, replays, conflicts = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'completed'), sum(replay_count),"
            " sum(conflict_count) FROM django_idempotency_idempotencyrecord"
            " WHERE scope LIKE 'order-list|%%'"
        ).fetchone()
        events = dict(
            conn.execute(
                "SELECT kind, count(*) FROM django_idempotency_idempotencyevent GROUP BY kind"
            ).fetchall()
        )
    assert stored == 6
    assert counted["stored"] == stored
    assert counted["replayed"] == replays == events.get("replayed", 0) > 0
    assert counted["mismatch"] == conflicts == events.get("mismatch", 0)
    assert counted["in_flight"] == events.get("in_flight", 0) == statuses.count(409)
    assert counted["mismatch"] == statuses.count(422) == 2
    # Every answer is counted once, whichever worker gave it.
    assert sum(counted.values()) == len(fired) + len(late)
    # Several workers wrote their own files, which /metrics added up.
    assert len(list(multiproc_dir.glob("counter_*.db"))) > 1
