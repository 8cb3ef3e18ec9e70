"""Throughput at saturation: as many clients as it takes to keep every gunicorn worker busy."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

from .variants import Variant, order_body


@dataclass(frozen=True)
class Throughput:
    variant: Variant
    clients: int
    seconds: float
    answered: int  # 2xx answers
    failed: int  # anything else, connection errors included

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def _burst(base_url: str, token: str, variant: Variant, clients: int, seconds: float) -> Throughput:
    """``clients`` threads sending new requests (a new key each) back to back for ``seconds``."""
    answered = failed = 0
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(number: int) -> None:
        nonlocal answered, failed
        session = requests.Session()
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        start.wait()
        sent = 0
        while time.monotonic() < stop_at[0]:
            sent += 1
            if variant.idempotent:
                headers["Idempotency-Key"] = variant.new_key()
            body = order_body(f"sat-{variant.slug}-{number}-{sent}")
            try:
                url = base_url + variant.path
                reply = session.post(url, data=body, headers=headers, timeout=60)
                ok = reply.ok
            except requests.RequestException:
                ok = False
            with lock:
                if ok:
                    answered += 1
                else:
                    failed += 1
        session.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.monotonic()
    start.wait()
    for thread in threads:
        thread.join()
    return Throughput(variant, clients, time.monotonic() - began, answered, failed)


def saturate(
    base_url: str,
    token: str,
    variants: tuple[Variant, ...],
    *,
    clients: int,
    seconds: float,
    repeats: int,
) -> list[Throughput]:
    """Each variant in turn, ``repeats`` times in a rotating order; totals per variant."""
    totals: dict[Variant, list[Throughput]] = {variant: [] for variant in variants}
    for repeat in range(repeats):
        shift = repeat % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            totals[variant].append(_burst(base_url, token, variant, clients, seconds))
    return [
        Throughput(
            variant,
            clients,
            sum(burst.seconds for burst in bursts),
            sum(burst.answered for burst in bursts),
            sum(burst.failed for burst in bursts),
        )
        for variant, bursts in totals.items()
    ]
