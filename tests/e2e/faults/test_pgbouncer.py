"""The storms again, through PgBouncer in transaction-pooling mode: two gunicorn instances
(8 workers) share 3 server connections, so consecutive transactions of one worker run on
different PostgreSQL sessions. The guarantees must not change."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import REPO_ROOT, _project_env

from .conftest import Bouncer, Launch
from .figures import FAULTS, measure
from .storms import duplicate_storm, reference_storm

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]


def test_duplicate_and_reference_storms_through_pgbouncer(
    e2e_database_url: str, e2e_token: str, launch: Launch, pgbouncer: Bouncer
) -> None:
    pooled = pgbouncer.url_for(e2e_database_url)
    # The fake gateway is another system: it does not queue for our pool (nested, it would
    # deadlock a pool whose every connection holds a transaction waiting on the gateway).
    outside = {"EXAMPLE_EXTERNAL_DATABASE_URL": e2e_database_url}
    servers = [launch(pooled, name=f"app-{n}", delay_ms=100, env=outside) for n in (1, 2)]
    urls = [server.url for server in servers]
    with measure(
        "Storms through PgBouncer (transaction pooling)",
        section=FAULTS,
        what="The duplicate storm (20 keys x 8 copies of an order) and the reference storm "
        "(8 orders x 6 keys, a 100 ms gateway) through PgBouncer in transaction-pooling mode, "
        f"two gunicorn instances (8 workers) sharing {pgbouncer.pool_size} server connections.",
    ) as sheet:
        duplicate_storm(sheet, urls, e2e_token, e2e_database_url, keys=20, copies=8)
        answers = sheet.notes.pop("answers")
        reference_storm(
            sheet, urls, e2e_token, e2e_database_url, orders=8, same_body_keys=5, other_body_keys=1
        )
        sheet.notes = {"orders storm": answers, "payments storm": sheet.notes.pop("answers")}
        # The workers' transactions really were multiplexed over the pool, in transaction mode.
        database = urlsplit(e2e_database_url).path.lstrip("/")
        [pool] = pgbouncer.show("POOLS", database)
        [stats] = pgbouncer.show("STATS", database)
        servers = len(pgbouncer.show("SERVERS", database))
        clients = len(pgbouncer.show("CLIENTS", database))
        sheet.notes["pgbouncer"] = {
            "client connections": clients,
            "server connections": servers,
            "transactions": int(stats["total_xact_count"]),
        }
        assert pool["pool_mode"] == "transaction"
        assert 0 < servers <= pgbouncer.pool_size < clients


CHECK = (
    "import django; django.setup(); "
    "from django_idempotency.checks.pooling import check_pooling; "
    "print(' '.join(m.id for m in check_pooling(databases=['default'])))"
)


def test_the_pooling_check_sees_pgbouncer(e2e_database_url: str, pgbouncer: Bouncer) -> None:
    def check_ids(database_url: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", CHECK],
            cwd=REPO_ROOT,
            env=_project_env(database_url),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout.strip()

    assert check_ids(e2e_database_url) == ""
    # The example project does not set DISABLE_SERVER_SIDE_CURSORS: through PgBouncer, the
    # server's own port differs from the configured one, and the check says what to do.
    assert check_ids(pgbouncer.url_for(e2e_database_url)) == "django_idempotency.W100"
