"""Draw docs/images/metrics-dashboard.png: the example project's metrics under load.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
        python scripts/metrics_dashboard.py [--seconds 90] [--out docs/images]

Creates a scratch PostgreSQL database (dropped at the end), serves the example project with
gunicorn (4 workers, ``PROMETHEUS_MULTIPROC_DIR``, records kept 20 s so that the purge has work),
and for ``--seconds`` sends it orders and payments from 8 client threads: new keys, retries,
copies at once, changed bodies, second payments of a paid order. 10 s after each pass ends,
``manage.py idempotency_purge`` runs again in a process of its own, writing its gauges to the
same directory. ``/metrics`` is scraped every 2 s; matplotlib (the ``dashboard`` dependency
group) draws what Prometheus and Grafana would: rates, wait and phase quantiles, the purge's lag.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.services import AppServer, free_port, manage, project_env, with_database  # noqa: E402

Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]
TTL_SECONDS = "20"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    admin = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    name = f"metrics_dashboard_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(admin, name)
        manage(url, "migrate", "--noinput")
        manage(url, "seed_demo", "--base-url", "http://127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="metrics-dashboard-") as scratch:
            scrapes = run(url, Path(scratch), args.seconds, token(url))
        args.out.mkdir(parents=True, exist_ok=True)
        draw(scrapes, args.out / "metrics-dashboard.png")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def token(url: str) -> str:
    """The demo user's API token (a password would be hashed on every request)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT t.key FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id"
            " WHERE u.username = 'demo'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def run(url: str, scratch: Path, seconds: float, key: str) -> list[tuple[float, Scrape]]:
    multiproc = scratch / "prometheus"
    multiproc.mkdir()
    env = {
        "EXAMPLE_METRICS": "prometheus",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "IDEMPOTENCY_TTL": TTL_SECONDS,
    }
    server = AppServer("gunicorn", free_port(), url, scratch / "gunicorn.log", env)
    server.run()
    try:
        stop = threading.Event()
        purger = threading.Thread(target=purge_every, args=(url, env, stop, 10.0))
        purger.start()
        scrapes: list[tuple[float, Scrape]] = []
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            clients = [pool.submit(client, server.url, key, stop, n) for n in range(8)]
            while time.monotonic() - started < seconds:
                scrapes.append((time.monotonic() - started, scrape(server.url)))
                time.sleep(2.0)
            stop.set()
            for future in clients:
                future.result()
        purger.join()
        return scrapes
    finally:
        server.stop()


def purge_every(url: str, env: dict[str, str], stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        subprocess.run(
            [sys.executable, "manage.py", "idempotency_purge", "--verbosity=0"],
            cwd=ROOT,
            env=project_env(url, **env),
            check=True,
        )


def client(base: str, api_token: str, stop: threading.Event, number: int) -> None:
    """One client's traffic: mostly new orders, with the retries and mistakes real ones make."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {api_token}"
    rng = random.Random(number)
    counter = itertools.count()
    recent: list[tuple[str, dict[str, Any]]] = []
    paid: list[int] = []

    def post(path: str, body: dict[str, Any], key: str) -> requests.Response:
        return session.post(
            f"{base}{path}", json=body, headers={"Idempotency-Key": key}, timeout=30
        )

    while not stop.is_set():
        roll = rng.random()
        key = f"c{number}-{next(counter)}"
        body = {"item": f"item {key}", "quantity": rng.randint(1, 5)}
        if roll < 0.55 or not recent:
            response = post("/api/orders/", body, key)
            recent = [*recent[-20:], (key, body)]
            if response.status_code == 201 and rng.random() < 0.3:
                order = response.json()["id"]
                post("/api/payments/", {"order": order, "amount": "10.00"}, f"{key}-pay")
                paid = [*paid[-20:], order]
        elif roll < 0.75:  # a retry after a lost answer
            post("/api/orders/", *reversed(rng.choice(recent)))
        elif roll < 0.88:  # a double click: copies at once
            with ThreadPoolExecutor(max_workers=3) as copies:
                list(copies.map(lambda _, b=body, k=key: post("/api/orders/", b, k), range(3)))
            recent = [*recent[-20:], (key, body)]
        elif roll < 0.95:  # the same key, another body
            old_key, old_body = rng.choice(recent)
            post("/api/orders/", {**old_body, "quantity": 99}, old_key)
        elif paid:  # a second payment of a paid order, under a new key
            post("/api/payments/", {"order": rng.choice(paid), "amount": "12.00"}, f"{key}-again")
        time.sleep(rng.uniform(0.01, 0.05))


def scrape(base: str) -> Scrape:
    text = requests.get(f"{base}/metrics", timeout=10).text
    found: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("django_idempotency_"):
                labels = tuple(sorted(sample.labels.items()))
                found[(sample.name, labels)] = sample.value
    return found


def total(scrape: Scrape, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, pairs), value in scrape.items()
        if sample == name and all(dict(pairs).get(k) == v for k, v in labels.items())
    )


def rates(
    scrapes: list[tuple[float, Scrape]], name: str, **labels: str
) -> tuple[list[float], list[float]]:
    times, values = [], []
    for (t0, s0), (t1, s1) in itertools.pairwise(scrapes):
        times.append(t1)
        values.append((total(s1, name, **labels) - total(s0, name, **labels)) / (t1 - t0))
    return times, values


def quantile(
    scrapes: list[tuple[float, Scrape]], name: str, q: float, **labels: str
) -> tuple[list[float], list[float]]:
    """histogram_quantile(q, rate(name_bucket[window])) over each pair of scrapes."""
    times, values = [], []
    for (_, s0), (t1, s1) in itertools.pairwise(scrapes):
        buckets: dict[float, float] = defaultdict(float)
        for (sample, pairs), value in s1.items():
            found = dict(pairs)
            if sample == f"{name}_bucket" and all(found.get(k) == v for k, v in labels.items()):
                buckets[float(found["le"])] += value - s0.get((sample, pairs), 0.0)
        bounds = sorted(buckets)
        count = buckets[bounds[-1]] if bounds else 0.0
        times.append(t1)
        if count <= 0:
            values.append(float("nan"))
            continue
        target, lower, below = q * count, 0.0, 0.0
        for bound in bounds:
            if buckets[bound] >= target:
                span = buckets[bound] - below
                upper = bound if bound != float("inf") else lower
                values.append(lower + (upper - lower) * ((target - below) / span if span else 1))
                break
            lower, below = bound, buckets[bound]
    return times, values


def draw(scrapes: list[tuple[float, Scrape]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(13, 8), constrained_layout=True)
    figure.suptitle("django-idempotency: the example project under load (gunicorn, 4 workers)")
    outcomes = axes[0][0]
    for outcome in (
        "stored",
        "replayed",
        "released",
        "mismatch",
        "reference_conflict",
        "in_flight",
    ):
        outcomes.plot(
            *rates(scrapes, "django_idempotency_outcomes_total", outcome=outcome), label=outcome
        )
    outcomes.set(title="rate(django_idempotency_outcomes_total) by outcome", ylabel="per second")
    outcomes.legend(fontsize="small")

    waits = axes[0][1]
    waits.plot(
        *rates(scrapes, "django_idempotency_waits_total"), label="waits / s", color="tab:purple"
    )
    waits.set(
        title="waits: rate and histogram_quantile(django_idempotency_wait_seconds)",
        ylabel="per second",
    )
    seconds = waits.twinx()
    for q, style in ((0.5, "--"), (0.95, ":")):
        seconds.plot(
            *quantile(scrapes, "django_idempotency_wait_seconds", q),
            style,
            color="black",
            label=f"p{int(q * 100)} wait",
        )
    seconds.set_ylabel("seconds")
    seconds.legend(fontsize="small", loc="upper right")
    waits.legend(fontsize="small", loc="upper left")

    phases = axes[1][0]
    for phase in ("claim", "view", "store", "replay"):
        times, values = quantile(scrapes, "django_idempotency_phase_seconds", 0.95, phase=phase)
        phases.plot(times, [v * 1000 for v in values], label=phase)
    phases.set(
        title="p95 of django_idempotency_phase_seconds by phase",
        ylabel="milliseconds",
        xlabel="seconds into the run",
    )
    phases.legend(fontsize="small")

    purge = axes[1][1]
    times = [t for t, _ in scrapes]
    purge.plot(
        times,
        [total(s, "django_idempotency_purge_lag_seconds") for _, s in scrapes],
        label="purge lag (s)",
        color="tab:red",
    )
    purge.set(
        title=f"purge: a pass 10 s after the last, records kept {TTL_SECONDS} s",
        ylabel="seconds",
        xlabel="seconds into the run",
    )
    found = purge.twinx()
    found.plot(
        times,
        [total(s, "django_idempotency_purge_backlog_records") for _, s in scrapes],
        "--",
        label="records found due",
        color="tab:gray",
    )
    found.set_ylabel("records")
    purge.legend(fontsize="small", loc="upper left")
    found.legend(fontsize="small", loc="upper right")
    figure.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
