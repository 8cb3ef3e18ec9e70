"""A private MariaDB server as the soak's database (``--database=mariadb``): its own data
directory, port and socket, run as ``mysql``, restarted by the nemesis (``fast``: a clean
shutdown; ``immediate``: SIGKILL, InnoDB's crash recovery at the next start).

Without grant tables (a throw-away server on 127.0.0.1): anyone connects as anyone. MariaDB has
no commit timestamps, so the checker dates business rows by their ``created_at`` (the app's
clock): the run skews no clock on it (``clock_safe``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.services import READY_TIMEOUT, STOP_TIMEOUT, free_port, wait_for_port

USER = "mysql"


def _as_mysql() -> dict[str, Any]:
    return {"user": USER, "group": USER, "extra_groups": []} if os.geteuid() == 0 else {}


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
class Mariadb:
    root: Path
    port: int = field(default_factory=free_port)
    vendor: str = "MariaDB"
    pooled: bool = False
    restart_modes: tuple[str, ...] = ("fast", "immediate")
    #: Whether business rows are dated by the database's clock (no: by ``created_at``).
    clock_safe: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "mariadb"

    @property
    def log_path(self) -> Path:
        return self.root / "mariadb.log"

    def url(self, database: str = "mysql", port: int | None = None) -> str:
        return f"mysql://root@127.0.0.1:{port or self.port}/{database}"

    def init(self) -> None:
        """``root`` is the server's own directory (``mysql`` must enter it)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, USER, USER)
            shutil.chown(self.data_dir, USER, USER)
        result = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data_dir}",
                f"--user={USER}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db: {result.stdout}{result.stderr}")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    f"--datadir={self.data_dir}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.data_dir}/mysqld.sock",
                    f"--pid-file={self.data_dir}/mysqld.pid",
                    "--skip-grant-tables",
                    "--max-connections=300",
                    "--innodb-buffer-pool-size=128M",
                    "--innodb-flush-log-at-trx-commit=1",
                    "--character-set-server=utf8mb4",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_mysql(),
            )
        wait_for_port(self.port, self.alive, timeout=READY_TIMEOUT)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)  # SIGTERM: a clean shutdown
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)

    def restart(self, mode: str) -> None:
        self.stop(signal.SIGTERM if mode == "fast" else signal.SIGKILL)
        self.start()

    def connect(self, url: str) -> Any:
        return connect(url)

    def translate(self, sql: str) -> str:
        return translate(sql)

    def create_database(self, name: str) -> None:
        with contextlib.closing(connect(self.url())) as conn, conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def terminate(self, database: str, pick: float, count: int) -> list[int]:
        with contextlib.closing(connect(self.url())) as conn, conn.cursor() as cursor:
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
