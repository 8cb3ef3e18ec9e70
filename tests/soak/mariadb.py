"""A private MariaDB server (tests/services.py's ``MariaDBServer``) as the soak's database
(``--database=mariadb``), restarted by the nemesis (``fast``: a clean shutdown; ``immediate``:
SIGKILL, InnoDB's crash recovery at the next start).

Without grant tables (a throw-away server on 127.0.0.1): anyone connects as anyone. MariaDB has
no commit timestamps, so the checker dates business rows by their ``created_at`` (the app's
clock): the run skews no clock on it (``clock_safe``).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from tests.services import MariaDBServer, free_port, private_dir

from .services import Served

#: The soak's server options on top of ``MariaDBServer``'s: a buffer pool for its load, each
#: commit durable (the nemesis kills the server), no grant tables.
OPTIONS = (
    "--skip-grant-tables",
    "--innodb-buffer-pool-size=128M",
    "--innodb-flush-log-at-trx-commit=1",
)


def connect(url: str) -> Any:
    """A DB-API connection (autocommit, UTC) to ``mysql://user@host:port/database``."""
    from urllib.parse import urlsplit

    import MySQLdb

    parts = urlsplit(url)
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        database=parts.path.lstrip("/") or "mysql",
        connect_timeout=5,
        autocommit=True,
    )
    with contextlib.closing(conn.cursor()) as cursor:
        # The checker's queries are written for PostgreSQL: ``||`` and ``"name"`` as there.
        cursor.execute("SET SESSION sql_mode = 'ANSI', time_zone = '+00:00'")
    return conn


def translate(sql: str) -> str:
    """A checker query written for PostgreSQL, in MariaDB's words: casts to text, and a row's
    commit time (none here) read as its ``created_at``."""
    sql = re.sub(
        r"extract\(epoch FROM pg_xact_commit_timestamp\((\w+\.)?xmin\)\)",
        lambda match: f"UNIX_TIMESTAMP({match.group(1) or ''}created_at)",
        sql,
    )
    return re.sub(r"([\w.\"]+)::text", r"CAST(\1 AS CHAR)", sql)


@dataclass
class Mariadb(Served):
    vendor: str = "MariaDB"
    pooled: bool = False
    restart_modes: tuple[str, ...] = ("fast", "immediate")
    #: Whether business rows are dated by the database's clock (no: by ``created_at``).
    clock_safe: bool = False

    @classmethod
    def private(cls) -> Mariadb:
        """In a directory of its own: the server runs as ``mysql``, which cannot enter the run's
        directory."""
        root = private_dir("idempotency-soak-mariadb-", "mysql")
        return cls(MariaDBServer(root=root, port=free_port(), options=OPTIONS))

    def connect(self, url: str) -> Any:
        return connect(url)

    def translate(self, sql: str) -> str:
        return translate(sql)

    def create_database(self, name: str) -> None:
        with contextlib.closing(connect(self.server.url())) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def terminate(self, database: str, pick: float, count: int) -> list[int]:
        with contextlib.closing(connect(self.server.url())) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s"
                " AND ID <> CONNECTION_ID() ORDER BY ID",
                [database],
            )
            ids = [int(row[0]) for row in cursor.fetchall()]
            start = int(pick * len(ids)) if ids else 0
            chosen = (ids[start:] + ids[:start])[:count]
            for session in chosen:
                with contextlib.suppress(Exception):  # it may have ended meanwhile
                    cursor.execute(f"KILL CONNECTION {session}")
            return chosen
