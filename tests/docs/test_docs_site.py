"""The docs site builds strictly, and every problem ``type`` a body can carry resolves in it.

Problem codes are discovered, not listed: every ``IdempotencyError`` subclass in the package
(every module imported first), every DRF ``APIException`` the exception handler renders, and
the ``handler500`` body. Needs mkdocs (``make docs`` installs it); skipped where it is missing,
except under ``CI=true``, where a missing mkdocs fails.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import RequestFactory
from rest_framework.exceptions import APIException

import django_idempotency
from django_idempotency.conf import Settings, app_settings
from django_idempotency.core.problems import problem_type, server_error
from django_idempotency.core.responses import StoredResponse
from django_idempotency.drf.handlers import _problem_code
from django_idempotency.exceptions import IdempotencyError

pytestmark = [pytest.mark.drf, pytest.mark.docs]

ROOT = Path(__file__).resolve().parents[2]

try:
    import mkdocs  # noqa: F401
    import yaml
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("mkdocs is not installed (make docs installs it)", allow_module_level=True)


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


def problem_codes() -> set[str]:
    for module in pkgutil.walk_packages(django_idempotency.__path__, "django_idempotency."):
        if ".migrations" not in module.name:
            importlib.import_module(module.name)
    ours = [IdempotencyError, *subclasses(IdempotencyError)]
    codes = {c.default_code for c in ours if c.__module__.startswith("django_idempotency")}
    # What problem_exception_handler makes of DRF's errors and of simplejwt's (the token auth
    # the README supports), imported here so the set does not depend on which test modules ran
    # first (instances without __init__: some constructors need arguments; only the class
    # matters to the code).
    importlib.import_module("rest_framework_simplejwt.exceptions")
    drf = [APIException, *subclasses(APIException)]
    known = {"rest_framework", "rest_framework_simplejwt", "django_idempotency"}
    handled: list[Any] = [c.__new__(c) for c in drf if c.__module__.split(".")[0] in known]
    codes |= {_problem_code(exc) for exc in [*handled, Http404(), PermissionDenied()]}
    # Problems built outside the exception classes: handler500 and the stored stand-in for an
    # oversized response.
    bodies = [
        server_error(RequestFactory().get("/")).content,
        StoredResponse.too_large(201, [], 1).body,
    ]
    codes |= {json.loads(body)["type"].rpartition("#")[2] for body in bodies}
    return codes


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(out)],
        cwd=ROOT,
        # As `make docs` and Read the Docs run it: without the test settings, so the settings
        # page shows the package's own defaults and a hook needing a project setting fails.
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def site_url() -> str:
    return str(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["site_url"])


def anchors(page: Path) -> set[str]:
    return set(re.findall(r'\sid="([^"]+)"', page.read_text()))


def test_codes_are_discovered() -> None:
    codes = problem_codes()
    assert {
        "idempotency-key-mismatch",
        "database-unavailable",
        "idempotency-key-not-supported",
        "invalid-issued-key",
        "issued-key-expired",
        "idempotency-response-too-large",
        "server-error",
        "throttled",
        "token-not-valid",
    } <= codes


def test_every_problem_type_resolves_to_an_anchor_of_the_built_site(
    site: Path, site_url: str
) -> None:
    missing = []
    for code in sorted(problem_codes()):
        uri = problem_type(code)
        assert uri.startswith(site_url), f"{uri} is not on the docs site {site_url}"
        page, _, anchor = uri[len(site_url) :].partition("#")
        path = site / page
        if not path.is_file() or anchor not in anchors(path):
            missing.append(uri)
    assert not missing, f"problem types without a page or anchor: {missing}"


def test_every_setting_is_on_the_settings_page(site: Path) -> None:
    documented = anchors(site / "settings.html")
    names = [name for name in vars(Settings) if name.isupper()]
    assert names
    assert {f"idempotency_{name.lower()}" for name in names} <= documented
    assert app_settings.PROBLEM_TYPE_BASE.endswith("problems.html#")


def nav_pages() -> list[str]:
    """The pages of mkdocs.yml's nav, sections walked into."""

    def walk(entries: list[dict[str, Any]]) -> list[str]:
        found: list[str] = []
        for entry in entries:
            (value,) = entry.values()
            found += walk(value) if isinstance(value, list) else [value]
        return found

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    pages = nav_pages()
    assert "drf.md" in pages
    for source in pages:
        assert (site / source.replace(".md", ".html")).is_file(), source


def test_every_page_of_docs_is_in_the_nav() -> None:
    written = {page.name for page in (ROOT / "docs").glob("*.md")}
    assert written == set(nav_pages())


def test_every_door_has_a_guide_the_readme_links_to() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for guide in ("drf", "django-views", "ninja", "celery", "side-effects", "guests", "adopting"):
        assert f"/{guide}.html" in readme, guide
        assert f"{guide}.md" in nav_pages()


def test_the_readmes_agree_on_the_extras_and_the_migrate_step() -> None:
    # pyproject.toml's extras (tomllib is Python 3.11+): the names of their section.
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w+) = ", section, re.MULTILINE))
    assert {"celery", "ninja"} <= extras
    for name in ("README.md", "README.pypi.md"):
        text = (ROOT / name).read_text()
        assert "python manage.py migrate" in text, name
        named = {extra for extra in {"drf", *extras} if re.search(rf"\b{extra}\b", text)}
        assert named == {"drf", *extras}, name


def test_the_drf_page_lists_every_attribute_and_hook_of_the_mixin(site: Path) -> None:
    from django_idempotency.drf import IdempotentAPIViewMixin

    page = (site / "drf.html").read_text()
    own = {n for cls in IdempotentAPIViewMixin.__mro__[:-1] for n in vars(cls)}
    # The options (attributes) and the get_idempotency_* hooks; not the methods doors build on.
    options = {n for n in own if not callable(getattr(IdempotentAPIViewMixin, n))}
    names = sorted(n for n in own if n.startswith("get_idemp") or n in options)
    names = [n for n in names if n.startswith(("idempotency_", "get_idemp"))]
    assert "idempotency_key_source" in names
    assert [name for name in names if f"<code>{name}" not in page] == []
