"""tests/databases.py on MariaDB, on a private server: a copy of the migrated template keeps what
the end-to-end tests depend on (the generated column and its unique index that stand for
PostgreSQL's partial index, foreign keys, rows), and a session sees the app's open transactions
and lock waits as PostgreSQL's pg_stat_activity shows them."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator

import pytest

from tests.databases import copy_database, create_database, drop_database, session
from tests.services import MariaDBServer, free_port, private_dir

pytestmark = pytest.mark.e2e

SCHEMA = [
    "CREATE TABLE parent (id INT PRIMARY KEY) ENGINE=InnoDB",
    "CREATE TABLE child (id INT AUTO_INCREMENT PRIMARY KEY, parent_id INT NOT NULL,"
    " state VARCHAR(10) NOT NULL, `key` VARCHAR(20) NOT NULL,"
    " live_key VARCHAR(20) AS (CASE WHEN state <> 'held' THEN `key` END) STORED,"
    " UNIQUE KEY live (live_key), FOREIGN KEY (parent_id) REFERENCES parent (id)) ENGINE=InnoDB",
    "INSERT INTO parent VALUES (1)",
    "INSERT INTO child (parent_id, state, `key`) VALUES (1, 'done', 'a'), (1, 'held', 'a')",
]


@pytest.fixture(scope="module")
def server() -> Iterator[MariaDBServer]:
    server = MariaDBServer(
        root=private_dir("idempotency-databases-test-", "mysql"), port=free_port()
    )
    try:
        server.init()
        server.start()
        create_database(server.url(), "template")
        with session(server.url("template")) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def test_a_copy_has_the_templates_tables_keys_and_rows(server: MariaDBServer) -> None:
    import MySQLdb  # here: the run without DRF collects this module without mysqlclient

    copy_database(server.url(), "template", "copy")
    with session(server.url("template")) as template, session(server.url("copy")) as copy:
        for table in ("parent", "child"):
            assert copy.execute(f"SHOW CREATE TABLE {table}").fetchone() == (
                template.execute(f"SHOW CREATE TABLE {table}").fetchone()
            )
        rows = "SELECT id, parent_id, state, `key`, live_key FROM child ORDER BY id"
        assert copy.execute(rows).fetchall() == (
            (1, 1, "done", "a", "a"),
            (2, 1, "held", "a", None),
        )
        # The copy's own rules: a second live row of a key collides, a held one does not.
        copy.execute("INSERT INTO child (parent_id, state, `key`) VALUES (1, 'held', 'a')")
        with pytest.raises(MySQLdb.IntegrityError, match="Duplicate entry"):
            copy.execute("INSERT INTO child (parent_id, state, `key`) VALUES (1, 'done', 'a')")
        # No parent 999 (the lock-wait test, in either order, adds parent 2 to the template).
        with pytest.raises(MySQLdb.IntegrityError, match="foreign key constraint"):
            copy.execute("INSERT INTO child (parent_id, state, `key`) VALUES (999, 'done', 'b')")
    drop_database(server.url(), "copy")
    with session(server.url()) as admin:
        assert admin.execute("SHOW DATABASES LIKE 'copy'").fetchall() == ()


def test_a_session_sees_an_open_transaction_and_a_lock_wait(server: MariaDBServer) -> None:
    url = server.url("template")
    with session(url) as watcher, session(url) as holder, session(url) as waiter:
        assert watcher.in_open_transactions() == []
        holder.execute("BEGIN")
        holder.execute("INSERT INTO parent VALUES (2)")
        [(holding, port)] = watcher.in_open_transactions()
        assert (holding,) == holder.execute("SELECT CONNECTION_ID()").fetchone()
        assert port > 0
        assert not watcher.lock_waiters()
        waiter.execute("SET SESSION innodb_lock_wait_timeout = 10")
        waiting = threading.Thread(target=waiter.execute, args=("INSERT INTO parent VALUES (2)",))
        waiting.start()
        assert _eventually(watcher.lock_waiters)
        watcher.terminate(holding)
        waiting.join(timeout=20)
        assert not watcher.session_exists(holding)
        assert watcher.execute("SELECT count(*) FROM parent WHERE id = 2").fetchone() == (1,)


def _eventually(condition: Callable[[], bool], tries: int = 50) -> bool:
    """``condition()`` true within ``tries`` polls (each paced by the session itself)."""
    return any(condition() for _ in range(tries))
