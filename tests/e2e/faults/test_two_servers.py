"""Two app servers (two gunicorn instances, 4 workers each) on one database, PostgreSQL or
MariaDB, hit by the same keys and the same orders at the same moment. On MariaDB they run under
both isolation levels (``mysql_rr``: Django's READ COMMITTED and InnoDB's REPEATABLE READ, whose
gap locks and deadlocks must end in a replay or a clean 409 too)."""

from __future__ import annotations

import pytest

from .conftest import Launch
from .figures import E2E, measure
from .storms import duplicate_storm, reference_storm

# Run on MariaDB too (DATABASE_URL=mysql://...).
pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.concurrent_db]

KEYS, COPIES = 20, 50
ORDERS, SAME_BODY_KEYS, OTHER_BODY_KEYS = 12, 6, 2


@pytest.mark.mysql_rr
def test_duplicate_storm_across_two_app_servers(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    servers = [launch(e2e_database_url, name=f"app-{n}") for n in (1, 2)]
    with measure(
        "Duplicate storm across two app servers",
        section=E2E,
        what=f"{KEYS} keys x {COPIES} simultaneous copies of POST /api/orders/, the copies "
        "alternating between two gunicorn instances (4 workers each) on one database; then "
        "every key once more on each instance.",
    ) as sheet:
        duplicate_storm(
            sheet, [s.url for s in servers], e2e_token, e2e_database_url, keys=KEYS, copies=COPIES
        )


@pytest.mark.mysql_rr
def test_reference_storm_across_two_app_servers(
    e2e_database_url: str, e2e_token: str, launch: Launch
) -> None:
    servers = [launch(e2e_database_url, name=f"app-{n}", delay_ms=200) for n in (1, 2)]
    with measure(
        "Reference storm across two app servers",
        section=E2E,
        what=f"{ORDERS} orders, each paid at once under {SAME_BODY_KEYS + OTHER_BODY_KEYS} "
        f"different keys ({OTHER_BODY_KEYS} of them with another amount), spread over two "
        "gunicorn instances, with a 200 ms gateway: one payment per order.",
    ) as sheet:
        reference_storm(
            sheet,
            [s.url for s in servers],
            e2e_token,
            e2e_database_url,
            orders=ORDERS,
            same_body_keys=SAME_BODY_KEYS,
            other_body_keys=OTHER_BODY_KEYS,
        )
