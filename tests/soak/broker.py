"""A private RabbitMQ node for the soak: its own node name, AMQP and distribution ports, and
data and log directories, so the nemesis can SIGKILL it without touching the machine's broker.

It runs as the ``rabbitmq`` user (as the machine's node does) with that user's home, so its
Erlang cookie is the one ``rabbitmqctl`` reads; the shared epmd registers its name. The
machine's ``/etc/rabbitmq`` files are not read: the node has an environment file, a config
and an (empty) plugin list of its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.services import READY_TIMEOUT, STOP_TIMEOUT, wait_for_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
USER = "rabbitmq"


def rabbitmq_installed() -> bool:
    return (RABBITMQ_BIN / "rabbitmq-server").exists()


def _as_rabbitmq() -> dict[str, Any]:
    """As root, run as ``rabbitmq`` (its home holds the cookie); otherwise as oneself."""
    if os.geteuid() != 0:
        return {}
    return {"user": USER, "group": USER, "extra_groups": []}


@dataclass
class Broker:
    """``start()`` returns once the node accepts AMQP connections; ``kill()`` is a SIGKILL of
    the node and every process it started; ``stop()`` a clean shutdown, then the same."""

    root: Path
    port: int
    dist_port: int
    name: str
    #: More environment for the node's processes (the run's mark).
    extra: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    restarts: int = 0

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log_path(self) -> Path:
        return self.root / "startup.log"

    def env(self) -> dict[str, str]:
        home = pwd.getpwnam(USER).pw_dir if os.geteuid() == 0 else os.environ["HOME"]
        base = str(self.root)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_BASE": base,
            "RABBITMQ_MNESIA_BASE": f"{base}/mnesia",
            "RABBITMQ_LOG_BASE": f"{base}/log",
            "RABBITMQ_PID_FILE": f"{base}/node.pid",
            "RABBITMQ_CONFIG_FILE": f"{base}/rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": f"{base}/advanced.config",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{base}/enabled_plugins",
            "RABBITMQ_CONF_ENV_FILE": f"{base}/rabbitmq-env.conf",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            **self.extra,
        }

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        files = {
            # guest may connect from 127.0.0.1 only, which is where everything connects from.
            "rabbitmq.conf": f"listeners.tcp.default = 127.0.0.1:{self.port}\n",
            "advanced.config": "[].\n",
            "enabled_plugins": "[].\n",
            "rabbitmq-env.conf": "",
        }
        for name, text in files.items():
            (self.root / name).write_text(text)
        if os.geteuid() == 0:
            for path in [self.root, *self.root.iterdir()]:
                shutil.chown(path, USER, USER)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                cwd=self.root,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_rabbitmq(),
            )
        wait_for_port(self.port, self.alive, timeout=READY_TIMEOUT)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The node and everything it started (erl_child_setup, inet_gethost, port programs),
        which leave their parent's session and would outlive it."""
        if self._process is None:
            return []
        try:
            top = psutil.Process(self._process.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL, no shutdown at all: unacknowledged messages go back to their queues (they
        are durable), connections die mid-frame."""
        found = self.processes()
        for process in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(found, timeout=STOP_TIMEOUT)
        if self._process is not None:
            self._process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        found = self.processes()
        if self._process is not None and self.alive():
            # SIGTERM is a clean shutdown of the node.
            self._process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=30)
        _gone, left = psutil.wait_procs(found, timeout=5)
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(left, timeout=STOP_TIMEOUT)

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl -n NODE ...`` against this node (with the node's own cookie)."""
        result = subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **_as_rabbitmq(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}")
        return str(result.stdout)
