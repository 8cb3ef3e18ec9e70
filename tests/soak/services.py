"""The processes a soak runs: a private PostgreSQL cluster, PgBouncer, gunicorn instances of
the example project, a uvicorn instance for its async doors, a Celery worker on a RabbitMQ
queue of the run's own and the purge loop. Each is
started on 127.0.0.1 and a free port, and stopped by its own PID; ``Services.close()`` stops
whatever is still running and removes the temporary directory, and is safe to call twice and
from a signal handler's ``finally``.

The processes themselves are tests/services.py's, shared with the end-to-end tests; this module
keeps what only the soak has (``Services``) and the names the soak imports from here.

The machine's shared PostgreSQL is never touched: the soak restarts only its own cluster. The
machine's RabbitMQ is shared too: the soak only declares, drains and deletes its own queue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from urllib.parse import urlsplit, urlunsplit

from tests.services import (
    AMQP_URL,
    READY_TIMEOUT,
    REPO_ROOT,
    STOP_TIMEOUT,
    AppServer,
    AsgiServer,
    Bouncer,
    CeleryWorker,
    Cluster,
    as_postgres,
    children,
    connect,
    delete_queue,
    free_port,
    kill_pids,
    manage,
    postgres_bin,
    private_dir,
    project_env,
    stop_process,
    use_ports,
    wait_for_port,
)

__all__ = [
    "AMQP_URL",
    "READY_TIMEOUT",
    "REPO_ROOT",
    "STOP_TIMEOUT",
    "AppServer",
    "AsgiServer",
    "Bouncer",
    "CeleryWorker",
    "Cluster",
    "Services",
    "as_postgres",
    "broker_address",
    "broker_url",
    "children",
    "connect",
    "delete_queue",
    "free_port",
    "kill_pids",
    "manage",
    "postgres_bin",
    "project_env",
    "stop_process",
    "use_ports",
    "wait_for_port",
]


def broker_address() -> tuple[str, int]:
    """RabbitMQ's host and port (what the broker's fault proxy forwards to)."""
    parts = urlsplit(AMQP_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def broker_url(port: int) -> str:
    """``AMQP_URL`` through a proxy on 127.0.0.1:``port``: same credentials and vhost."""
    parts = urlsplit(AMQP_URL)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class Services:
    """Everything the soak started, in one place, so one ``close()`` stops it all."""

    def __init__(self) -> None:
        self.root = private_dir("idempotency-soak-")
        self.cluster = Cluster(root=self.root, port=free_port())
        self.bouncer: Bouncer | None = None
        self.apps: list[AppServer] = []
        self.purge: subprocess.Popen[bytes] | None = None
        #: The run's RabbitMQ queue, deleted on close.
        self.queue = f"idempotency-soak-{os.getpid()}-{self.root.name.rsplit('-', 1)[-1]}"
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for app in self.apps:
            with contextlib.suppress(Exception):
                app.stop()
        if self.purge is not None:
            with contextlib.suppress(Exception):
                stop_process(self.purge)
        if self.bouncer is not None:
            with contextlib.suppress(Exception):
                self.bouncer.stop()
        with contextlib.suppress(Exception):
            delete_queue(self.queue)
        self.cluster.stop()
        shutil.rmtree(self.root, ignore_errors=True)
