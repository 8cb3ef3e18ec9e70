"""The quick start (docs/quickstart.md) runs as written: a new project from its commands and
files, served by ``runserver``, and its ``curl`` commands answered as the page shows.

Nothing of the page is copied here: the shell blocks are run (``django-admin``, ``cd``,
``manage.py``), each Python block is written to the file its first line names (or appended to
it, "add at the end"), each ``curl`` is sent to the server, and each ``http`` block is the
answer to the last ``curl``: the first one to its first sending, a later one to the same
command sent again ("send the very same command again"). A status, a header or a JSON member
that differs fails the test; ``"..."`` stands for a value the page does not fix.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# It starts a real server (runserver), as the e2e tests do: part of the PostgreSQL run of `make
# test`, not of `make test-fast`.
pytestmark = [pytest.mark.drf, pytest.mark.docs, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "quickstart.md"
#: Commands of the page a test cannot or need not run: the install into a virtualenv (the test
#: runs in one that has the package), the clone.
NOT_RUN = ("python -m venv", "git clone", "pip install")
#: The Python block for PostgreSQL: applied only by the PostgreSQL run below.
POSTGRES_BLOCK = "# mysite/settings.py (PostgreSQL)"
DOCUMENTED_PORT = "127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    language: str
    text: str


def blocks() -> list[Block]:
    found = re.findall(r"^```(\w+)\n(.*?)^```$", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    return [Block(language, text) for language, text in found]


def commands(block: Block) -> list[str]:
    """The block's commands, continuation lines joined and trailing comments dropped."""
    joined = block.text.replace("\\\n", " ")
    return [
        shlex.join(shlex.split(line, comments=True))
        for line in joined.splitlines()
        if shlex.split(line, comments=True)
    ]


@dataclass
class Project:
    """The reader's machine: a directory, the environment, and the server once it runs."""

    cwd: Path
    env: dict[str, str]
    settings_extra: str = ""
    port: int = 0
    server: subprocess.Popen[bytes] | None = None
    held: list[socket.socket] = field(default_factory=list)

    def run(self, command: str) -> None:
        words = shlex.split(command)
        if words[0] == "cd":
            self.cwd = self.cwd / words[1]
            return
        env = dict(self.env)
        while "=" in words[0]:  # VAR=value python manage.py ...
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words[0] == "django-admin":
            words = [sys.executable, "-m", "django", *words[1:]]
        elif words[:2] == ["python", "manage.py"]:
            words = [sys.executable, *words[1:]]
        else:
            raise AssertionError(f"the test does not know how to run {command!r}")
        if words[2:3] == ["runserver"]:
            self.serve(words, env)
            return
        done = subprocess.run(words, cwd=self.cwd, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"

    def write(self, block: Block) -> None:
        header, _, code = block.text.partition("\n")
        match = re.fullmatch(r"# (\S+)( \(add at the end\))?", header)
        assert match, f"a Python block must name its file on its first line: {header!r}"
        path = self.cwd / match.group(1)
        if match.group(2):
            path.write_text(path.read_text() + "\n" + code)
        else:
            path.write_text(code)

    def serve(self, words: list[str], env: dict[str, str]) -> None:
        # A port the kernel hands out, kept bound (SO_REUSEADDR, not listening) so that no
        # other program gets it; runserver sets SO_REUSEADDR too and binds it.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.held.append(sock)
        self.port = sock.getsockname()[1]
        address = f"127.0.0.1:{self.port}"
        self.server = subprocess.Popen(
            [*words, "--noreload", address], cwd=self.cwd, env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.server.poll() is None, "runserver exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "runserver did not start listening"
                time.sleep(0.1)

    def curl(self, command: str) -> Response:
        words = shlex.split(command)
        assert words[0] == "curl", command
        headers: dict[str, str] = {}
        data: bytes | None = None
        url = ""
        args = iter(words[1:])
        for arg in args:
            if arg == "-i":
                continue
            if arg == "-u":
                token = base64.b64encode(next(args).encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            elif arg == "-H":
                name, _, value = next(args).partition(":")
                headers[name.strip()] = value.strip()
            elif arg == "-d":
                data = next(args).encode()
                headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            elif arg.startswith("http"):
                url = arg.replace(DOCUMENTED_PORT, f"127.0.0.1:{self.port}")
            else:
                raise AssertionError(f"the test does not know curl's {arg!r}")
        assert self.server is not None, "a curl before runserver"
        request = urllib.request.Request(url, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers), error.read())

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=30)
            self.server = None
        while self.held:
            self.held.pop().close()


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def assert_answers_as_shown(response: Response, shown: str) -> None:
    head, _, body = shown.partition("\n\n")
    status_line, *header_lines = head.splitlines()
    assert response.status == int(status_line.split()[1]), (status_line, response)
    for line in header_lines:
        name, _, value = line.partition(":")
        assert response.headers.get(name) == value.strip(), (line, response.headers)
    if body.strip():
        answered = json.loads(response.body)
        for member, value in json.loads(body).items():
            if value != "...":
                assert answered.get(member) == value, (member, answered)
            else:
                assert member in answered, (member, answered)


def follow_the_page(project: Project, python_blocks: set[str] = frozenset()) -> int:
    """Every block of the page in order; returns how many answers were compared."""
    last_curl, fresh, compared = "", None, 0
    for block in blocks():
        if block.language == "sh":
            for command in commands(block):
                if command.startswith(NOT_RUN):
                    continue
                if command.startswith("curl"):
                    last_curl, fresh = command, project.curl(command)
                else:
                    project.run(command)
        elif block.language == "python":
            if block.text.startswith(POSTGRES_BLOCK):
                if POSTGRES_BLOCK in python_blocks:
                    project.write(
                        Block(
                            "python",
                            "# mysite/settings.py (add at the end)\n"
                            + block.text.partition("\n")[2]
                            + project.settings_extra,
                        )
                    )
                continue
            project.write(block)
        elif block.language == "http":
            response = fresh if fresh is not None else project.curl(last_curl)
            fresh = None
            assert_answers_as_shown(response, block.text)
            compared += 1
    return compared


def reader_env() -> dict[str, str]:
    """This virtualenv and this checkout's package; nothing of the test project's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH")
    }
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    project = Project(cwd=tmp_path, env=reader_env())
    try:
        yield project
    finally:
        project.stop()


def test_the_quick_start_runs_as_written_on_sqlite(project: Project) -> None:
    compared = follow_the_page(project)
    # The request, its replay, the mismatch, the reference conflict, the anonymous client.
    assert compared == 5
    payments = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from payments.models import Payment; print(Payment.objects.count())",
        ],
        cwd=project.cwd,
        env=project.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert payments.stdout.splitlines()[-1] == "1"  # Django 5.2+ prints its imports first


def test_the_page_names_the_postgresql_driver_it_configures() -> None:
    (postgres,) = [b for b in blocks() if b.text.startswith(POSTGRES_BLOCK)]
    namespace: dict[str, Any] = {}
    exec(postgres.text, namespace)
    assert namespace["DATABASES"]["default"]["ENGINE"] == "django.db.backends.postgresql"
    installs = [c for b in blocks() if b.language == "sh" for c in commands(b)]
    assert "pip install 'psycopg[binary]'" in installs


@pytest.mark.concurrent_db
def test_the_quick_start_runs_as_written_on_postgresql(project: Project) -> None:
    """The PostgreSQL block as written, on a scratch database of its own (the name is the only
    change: "mysite" may exist on a shared server)."""
    import psycopg
    from django.conf import settings

    server = settings.DATABASES["default"]
    name = f"quickstart_{uuid.uuid4().hex[:12]}"
    connect = {k.lower(): server[k] for k in ("HOST", "PORT", "USER", "PASSWORD") if server[k]}
    with psycopg.connect(dbname="postgres", autocommit=True, **connect) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    project.settings_extra = (
        f'\nDATABASES["default"].update(NAME={name!r}, HOST={server["HOST"]!r}, '
        f"PORT={str(server['PORT'])!r}, USER={server['USER']!r}, "
        f"PASSWORD={server['PASSWORD']!r})\n"
    )
    try:
        assert follow_the_page(project, {POSTGRES_BLOCK}) == 5
    finally:
        project.stop()
        with psycopg.connect(dbname="postgres", autocommit=True, **connect) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
