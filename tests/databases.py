"""The database servers the end-to-end tests run the example project on, told apart by the URL's
scheme: PostgreSQL (``postgres://``) or MariaDB/MySQL (``mysql://``).

A test reaches its database through a ``Session`` (``session(url)``): rows counted behind the
app's back with the same ``execute(query, params).fetchone()`` on both (both drivers take
``%s`` placeholders), and the server's view of the app's sessions (which one sits in an open
transaction, whether one waits on a lock) and the means to end one. Databases are made, copied
from a migrated template and dropped with ``create_database``, ``copy_database`` and
``drop_database`` on the server's admin URL.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dj_database_url
import psycopg
from psycopg import sql


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Session:
    """An autocommit connection to one database, and what the tests ask its server."""

    #: The figures' name of the server (tests/e2e/faults/figures.py).
    label: ClassVar[str]

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def in_open_transactions(self) -> list[tuple[int, int]]:
        """``(session id, client port)`` of the other sessions on this database that hold an
        open transaction while doing nothing (a view waiting on its gateway)."""
        raise NotImplementedError

    def lock_waiters(self) -> bool:
        """Whether a session on this database waits for a lock."""
        raise NotImplementedError

    def session_exists(self, session: int) -> bool:
        raise NotImplementedError

    def terminate(self, session: int) -> None:
        """End the session as its server would on a fault: its transaction rolled back, its
        client's next statement an error."""
        raise NotImplementedError


class PostgresSession(Session):
    label = "postgresql"

    def __init__(self, url: str) -> None:
        self.connection = psycopg.connect(url, autocommit=True, connect_timeout=5)

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        return self.connection.execute(query, list(params) or None)

    def close(self) -> None:
        self.connection.close()

    def in_open_transactions(self) -> list[tuple[int, int]]:
        rows = self.execute(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
        ).fetchall()
        return [(int(pid), int(port)) for pid, port in rows]

    def lock_waiters(self) -> bool:
        query = (
            "SELECT 1 FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return self.execute(query).fetchone() is not None

    def session_exists(self, session: int) -> bool:
        query = "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
        return self.execute(query, [session]).fetchone() is not None

    def terminate(self, session: int) -> None:
        self.execute("SELECT pg_terminate_backend(%s)", [session])


#: Seconds between two reads of INNODB_TRX (see ``MariaDBSession._transactions``).
INNODB_TRX_REFRESH = 0.15
#: A session of MariaDB's (or MySQL's) on this database, and its InnoDB transaction if it has one.
_MARIADB_SESSIONS = (
    "FROM information_schema.PROCESSLIST p"
    " JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID"
    " WHERE p.DB = DATABASE() AND p.ID <> CONNECTION_ID()"
)


class MariaDBSession(Session):
    label = "mariadb"

    def __init__(self, url: str) -> None:
        import MySQLdb  # only the MariaDB runs need mysqlclient

        settings = dj_database_url.parse(url)
        self.connection = MySQLdb.connect(
            host=settings["HOST"] or "127.0.0.1",
            port=int(settings["PORT"] or 3306),
            user=settings["USER"] or "root",
            password=settings["PASSWORD"] or "",
            database=settings["NAME"] or "",
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
        )
        self._last_read = 0.0

    def execute(self, query: str, params: Sequence[Any] = ()) -> Cursor:
        cursor = self.connection.cursor()
        cursor.execute(query, tuple(params) if params else None)
        return cursor

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the server may have been killed under it
            self.connection.close()

    def _transactions(self, query: str) -> Any:
        """Rows of a query on INNODB_TRX. InnoDB refreshes that table's copy only once it has
        not been read for 100 ms (``can_cache_be_updated`` in trx0i_s.cc): a quicker poll would
        read the same stale copy for ever, so reads are spaced."""
        pause = self._last_read + INNODB_TRX_REFRESH - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            return self.execute(query).fetchall()
        finally:
            self._last_read = time.monotonic()

    def in_open_transactions(self) -> list[tuple[int, int]]:
        rows = self._transactions(
            f"SELECT p.ID, p.HOST {_MARIADB_SESSIONS} AND p.COMMAND = 'Sleep'"
        )
        # HOST is "127.0.0.1:54321" for a client over TCP.
        return [(int(id_), int(host.rpartition(":")[2])) for id_, host in rows]

    def lock_waiters(self) -> bool:
        return bool(
            self._transactions(f"SELECT 1 {_MARIADB_SESSIONS} AND t.trx_state = 'LOCK WAIT'")
        )

    def session_exists(self, session: int) -> bool:
        query = "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s"
        return self.execute(query, [session]).fetchone() is not None

    def terminate(self, session: int) -> None:
        # As when the server ends a session (wait_timeout, a failover): the transaction is
        # rolled back, the client's connection is closed.
        self.execute("KILL CONNECTION %s", [session])


def mysql_isolation() -> str:
    """The isolation level of a MariaDB run: IDEMPOTENCY_TEST_MYSQL_ISOLATION, by default
    Django's ``read committed`` (``repeatable read`` is InnoDB's own default)."""
    return os.environ.get("IDEMPOTENCY_TEST_MYSQL_ISOLATION", "read committed")


def with_options(url: str, **options: str) -> str:
    """``url`` with ``options`` in its query (dj-database-url puts them in OPTIONS)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit(parts._replace(query=urlencode(query)))


def is_mariadb(url: str) -> bool:
    return urlsplit(url).scheme in ("mysql", "mariadb")


def label(url: str) -> str:
    """The server's name in the figures and the docs: ``postgresql`` or ``mariadb``."""
    return MariaDBSession.label if is_mariadb(url) else PostgresSession.label


def session(url: str) -> Session:
    """An autocommit session on the database of ``url``."""
    return MariaDBSession(url) if is_mariadb(url) else PostgresSession(url)


def _admin(url: str) -> Session:
    """A session on the server of ``url`` outside any database of the tests' own (PostgreSQL:
    CREATE/DROP DATABASE cannot run inside a transaction block or in the database dropped)."""
    if is_mariadb(url):
        return MariaDBSession(urlsplit(url)._replace(path="/").geturl())
    return PostgresSession(url)


def create_database(admin_url: str, name: str) -> None:
    with _admin(admin_url) as admin:
        if is_mariadb(admin_url):
            admin.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        else:
            admin.execute(
                sql.SQL("CREATE DATABASE {}")
                .format(sql.Identifier(name))
                .as_string(admin.connection)
            )


def copy_database(admin_url: str, template: str, name: str) -> None:
    """``name``, a new database with the tables and rows of ``template``.

    PostgreSQL copies it whole (``CREATE DATABASE ... TEMPLATE``); MariaDB has no such thing, so
    each table is made from its own ``SHOW CREATE TABLE`` (indexes, generated columns and foreign
    keys included) and filled with ``INSERT ... SELECT`` of its stored columns.
    """
    if not is_mariadb(admin_url):
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
        with _admin(admin_url) as admin:
            admin.execute(
                query.format(sql.Identifier(name), sql.Identifier(template)).as_string(
                    admin.connection
                )
            )
        return
    create_database(admin_url, name)
    with _admin(admin_url) as admin:
        admin.execute("SET SESSION foreign_key_checks = 0")
        admin.execute(f"USE `{name}`")
        tables = admin.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            [template],
        ).fetchall()
        references = admin.execute(
            "SELECT table_name, referenced_table_name"
            " FROM information_schema.referential_constraints"
            " WHERE constraint_schema = %s",
            [template],
        ).fetchall()
        for table in _referenced_first([name for (name,) in tables], references):
            _, create = admin.execute(f"SHOW CREATE TABLE `{template}`.`{table}`").fetchone()
            admin.execute(create)
            stored = admin.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s AND extra NOT LIKE '%%GENERATED%%' ORDER BY ordinal_position",
                [template, table],
            ).fetchall()
            columns = ", ".join(f"`{column}`" for (column,) in stored)
            admin.execute(
                f"INSERT INTO `{table}` ({columns}) SELECT {columns} FROM `{template}`.`{table}`"
            )


def _referenced_first(tables: list[str], references: Sequence[tuple[str, str]]) -> list[str]:
    """``tables`` with every table after those its foreign keys reference: a table created
    before the one it references (foreign_key_checks off) may not check that key until InnoDB
    opens it afresh."""
    ordered: list[str] = []
    pending = sorted(tables)
    while pending:
        ready = [
            table
            for table in pending
            if all(
                parent in ordered or parent == table or parent not in pending
                for child, parent in references
                if child == table
            )
        ]
        if not ready:  # a cycle: no order helps
            ready = pending[:1]
        ordered.extend(ready)
        pending = [table for table in pending if table not in ready]
    return ordered


def drop_database(admin_url: str, name: str) -> None:
    """Drop ``name``, ending whatever session is still on it (a worker killed mid-request may
    leave one behind for a moment)."""
    with _admin(admin_url) as admin:
        if not is_mariadb(admin_url):
            query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(query.format(sql.Identifier(name)).as_string(admin.connection))
            return
        left = admin.execute(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
            [name],
        ).fetchall()
        for (session_id,) in left:
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                admin.terminate(int(session_id))
        admin.execute(f"DROP DATABASE IF EXISTS `{name}`")
