"""A gunicorn worker is SIGKILLed after the (external) gateway charged and before our transaction
committed. The retry with the same key runs the view again; with the derived key the gateway
answers with the first charge, so there is one payment and one charge. Without it (the control
run, ``EXAMPLE_DERIVED_KEYS=0``) the customer is charged twice: the test can fail."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import requests

from tests.databases import Session, session

from .conftest import Launch
from .figures import FAULTS, measure
from .harness import (
    Background,
    Instance,
    Payment,
    Tally,
    holder_worker,
    in_flight_records,
    new_order,
    scalar,
    wait_for,
)

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]

ROUNDS = 2
CRASH_WINDOW_MS = 3000


def charges(conn: Session, order: int) -> int:
    return int(scalar(conn, 'SELECT count(*) FROM shop_gatewaycharge WHERE "order" = %s', [order]))


def payments(conn: Session, order: int) -> int:
    return int(scalar(conn, "SELECT count(*) FROM shop_payment WHERE order_id = %s", [order]))


def crash_after_charge(
    app: Instance, token: str, conn: Session, round_: int, tally: Tally
) -> tuple[int, requests.Response | None]:
    """One payment whose worker dies in the crash window, then retried until it settles."""
    order_id = new_order(app.url, token, f"o{round_}")
    payment = Payment(app.url, token, order=order_id, key=f"charge-crash-{round_}")
    holder = Background(payment.send)
    # The gateway has recorded the charge; our transaction is still open in the sleep after it.
    wait_for(lambda: charges(conn, order_id) == 1, timeout=30)
    worker, backend = holder_worker(app, conn)
    os.kill(worker, signal.SIGKILL)
    holder.join()
    tally.saw(holder.response, holder.error)
    assert holder.response is None, holder.response.text if holder.response else None
    wait_for(lambda: not conn.session_exists(backend))
    assert payments(conn, order_id) == 0  # rolled back with the worker

    return order_id, payment.settle(tally, seconds=60)


def test_a_worker_killed_after_the_charge_charges_once(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    app = launch(
        e2e_database_url,
        name="app",
        env={"EXAMPLE_GATEWAY_DELAY_AFTER_CHARGE_MS": str(CRASH_WINDOW_MS)},
    )
    tally = Tally()
    with (
        measure(
            "Worker killed after the gateway charged",
            section=FAULTS,
            what=f"{ROUNDS} payments: the gateway (its own connection) records the charge, the "
            f"worker sleeps {CRASH_WINDOW_MS} ms before committing and is SIGKILLed there; the "
            "client retries with the same key. The gateway deduplicates by the derived key.",
        ) as sheet,
        session(e2e_database_url) as conn,
    ):
        settled = [crash_after_charge(app, e2e_token, conn, i, tally) for i in range(ROUNDS)]
        sheet.processes_killed = ROUNDS
        sheet.operations = ROUNDS
        sheet.requests = tally.requests
        counts = [(payments(conn, order), charges(conn, order)) for order, _ in settled]
        sheet.lost = sum(1 for paid, charged in counts if paid == 0 or charged == 0)
        sheet.duplicated = sum(max(0, paid - 1) + max(0, charged - 1) for paid, charged in counts)
        sheet.stuck_records = in_flight_records(conn)
        sheet.notes["answers"] = dict(sorted(tally.statuses.items()))

        for _, retry in settled:
            assert retry is not None
            assert retry.status_code == 201, retry.text
        assert counts == [(1, 1)] * ROUNDS
        # The payment row names the charge the gateway kept.
        for order, retry in settled:
            assert retry is not None
            charge_ids = [row["id"] for row in _listed_charges(app, e2e_token, order)]
            assert charge_ids == [retry.json()["charge_id"]]
        assert (sheet.lost, sheet.duplicated, sheet.stuck_records) == (0, 0, 0)


def test_without_derived_keys_the_same_crash_charges_twice(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    """The control: what the derived key prevents. Same crash, no key for the gateway."""
    app = launch(
        e2e_database_url,
        name="app",
        env={
            "EXAMPLE_GATEWAY_DELAY_AFTER_CHARGE_MS": str(CRASH_WINDOW_MS),
            "EXAMPLE_DERIVED_KEYS": "0",
        },
    )
    with session(e2e_database_url) as conn:
        order, retry = crash_after_charge(app, e2e_token, conn, 0, Tally())
        assert retry is not None
        assert retry.status_code == 201, retry.text
        # Our own database is still right (one payment) but the customer paid twice.
        assert (payments(conn, order), charges(conn, order)) == (1, 2)
        listed = _listed_charges(app, e2e_token, order)
        assert [row["idempotency_key"] for row in listed] == [None, None]


def _listed_charges(app: Instance, token: str, order: int) -> list[dict[str, Any]]:
    response = requests.get(
        f"{app.url}/api/gateway/charges/?order={order}",
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result
