"""Shared fixtures. Tests marked ``concurrent_db`` need a database that serves concurrent
writers (PostgreSQL, or MariaDB/MySQL: DATABASE_URL=mysql://...); those marked ``postgres``
need PostgreSQL itself, those marked ``mysql`` MariaDB or MySQL. They fail under CI (CI=true)
when DATABASE_URL does not point at one, and are skipped only on a developer's SQLite run.

Modules marked ``drf`` (``pytestmark``) need Django REST framework; without it they are not even
imported, and the run must deselect them (``-m "not drf"``, as ``make test-nodrf`` does). Nothing
here imports DRF or Celery at import time: the DRF clients are made inside their fixtures, the
RabbitMQ queue comes from ``tests/services.py``."""

from __future__ import annotations

import ast
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from django.db import connection, connections

from tests.factories import UserFactory

if TYPE_CHECKING:
    from rest_framework.test import APIClient

    from tests.testapp.views import Gate

T = TypeVar("T")

DRF_INSTALLED = find_spec("rest_framework") is not None


def pytest_configure(config: pytest.Config) -> None:
    """IDEMPOTENCY_TEST_NODRF (set by ``tox -e py313-nodrf``): the run proves the package works
    without DRF, so DRF must not import; and a run without DRF must deselect the drf tests,
    which it cannot import, rather than pass by silently leaving them out."""
    if os.environ.get("IDEMPOTENCY_TEST_NODRF") and DRF_INSTALLED:
        raise pytest.UsageError("IDEMPOTENCY_TEST_NODRF is set, yet rest_framework imports")
    if not DRF_INSTALLED and "not drf" not in (config.option.markexpr or ""):
        raise pytest.UsageError('DRF is not installed: select the other tests, -m "not drf"')


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Without DRF, a test module marked ``drf`` is not imported (its imports would fail)."""
    if DRF_INSTALLED or collection_path.suffix != ".py":
        return None
    return True if _marked_drf(collection_path) else None


@cache
def _marked_drf(module: Path) -> bool:
    """Whether the module's ``pytestmark`` names ``pytest.mark.drf``."""
    for statement in ast.parse(module.read_bytes()).body:
        targets = [*getattr(statement, "targets", []), getattr(statement, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets):
            return any(
                isinstance(node, ast.Attribute)
                and node.attr == "drf"
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "mark"
                for node in ast.walk(statement)
            )
    return False


def _on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql"))


def _on_mysql() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("mysql", "mariadb"))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """IDEMPOTENCY_TEST_DB_NAME names the test database (default ``test_<DATABASE_URL's
    name>``; the second alias gets ``_other`` appended), so two runs can share one server."""
    from django.conf import settings

    name = os.environ.get("IDEMPOTENCY_TEST_DB_NAME")
    if not name or not (_on_postgres() or _on_mysql()):
        return
    for alias, suffix in (("default", ""), ("other", "_other")):
        settings.DATABASES[alias].setdefault("TEST", {})["NAME"] = f"{name}{suffix}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL the ``mysql`` tests are deselected, as the ``postgres`` ones are on
    MariaDB by the runs' ``-m``: they are about the other server, and `make test` runs them
    there; so the PostgreSQL runs (make test, tox) need no marker expression for them."""
    if not _on_postgres():
        return
    other = [item for item in items if "mysql" in item.keywords]
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if "mysql" not in item.keywords]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "postgres" in item.keywords and not _on_postgres():
        needs = "PostgreSQL: DATABASE_URL=postgres://..."
    elif "mysql" in item.keywords and not _on_mysql():
        needs = "MariaDB/MySQL: DATABASE_URL=mysql://..."
    elif "concurrent_db" in item.keywords and not (_on_postgres() or _on_mysql()):
        needs = "PostgreSQL or MariaDB/MySQL: DATABASE_URL=postgres://... or mysql://..."
    else:
        return
    if os.environ.get("CI"):
        pytest.fail(f"This test needs {needs} (CI=true)")
    pytest.skip(f"needs {needs}")


@pytest.fixture
def user(db: None) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db: None) -> Any:
    return UserFactory(username="bob")


def client_for(user: Any) -> APIClient:
    from rest_framework.test import APIClient

    from tests.factories import TokenFactory

    client = APIClient()
    token = TokenFactory(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def race(copies: int, call: Callable[[int], T]) -> list[T]:
    """``call(0)`` ... ``call(copies - 1)`` from as many threads, released together by a
    barrier; each thread closes its own database connections when it is done."""
    barrier = threading.Barrier(copies)

    def one(index: int) -> T:
        try:
            barrier.wait(timeout=10)
            return call(index)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=copies) as pool:
        return list(pool.map(one, range(copies)))


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A ``Gate`` that a probe request names with ``"gate": "held"``; opened at the end in any
    case, so that no request is left waiting."""
    from tests.testapp.views import GATES, Gate  # DRF views: only the tests that use a gate

    GATES["held"] = held = Gate()
    yield held
    held.open()
    del GATES["held"]


@pytest.fixture
def api(user: Any) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user: Any) -> APIClient:
    return client_for(other_user)


Post = Callable[..., Any]


@pytest.fixture
def post(api: APIClient) -> Post:
    """``post(path, data, key=...)``: a JSON POST as alice, with an Idempotency-Key if given."""

    def _post(
        path: str,
        data: Any = None,
        key: str | None = None,
        client: APIClient | None = None,
        **extra: Any,
    ) -> Any:
        headers = dict(extra)
        if key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = key
        return (client or api).post(path, data or {}, format="json", **headers)

    return _post


@pytest.fixture
def vendor() -> str:
    return connection.vendor


ProblemCheck = Callable[..., dict[str, Any]]


@pytest.fixture
def assert_problem() -> ProblemCheck:
    """``assert_problem(response, status, code)``: an RFC 9457 answer; returns its document.

    ``code`` is the end of the problem's ``type`` URI (the error's stable ``default_code``).
    """

    def _check(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
        assert response.status_code == status, response.content
        assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
        document: dict[str, Any] = json.loads(response.content)
        assert {"type", "title", "status", "detail"} <= document.keys(), document
        assert document["status"] == status
        assert document["title"]
        assert document["detail"]
        if code is not None:
            assert document["type"].endswith(f"#{code}"), document["type"]
        return document

    return _check


@pytest.fixture
def anon() -> APIClient:
    """A client with no credentials at all."""
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def queue() -> Iterator[str]:
    """A RabbitMQ queue of this test's own, deleted afterwards with the direct exchange of the
    same name that Celery declares for it (durable: it would stay on the shared broker)."""
    # Imported here: only the Celery tests need kombu, the SQLite run does without it.
    from tests.services import delete_queue

    name = f"idempotency-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_queue(name)
