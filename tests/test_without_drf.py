"""The package without Django REST framework: everything but the DRF door imports, and the test
project's checks pass, in an interpreter where ``import rest_framework`` fails.

``make test-nodrf`` runs the non-DRF tests with DRF uninstalled; this test also holds in the full
environment, where DRF is blocked instead (``sys.modules["rest_framework"] = None``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The DRF door and the URLconf of its issued-keys endpoint (a DRF view): need DRF.
NEEDS_DRF = ("django_idempotency.drf", "django_idempotency.urls")

SCRIPT = f"""
import importlib, pkgutil, sys

sys.modules["rest_framework"] = None  # every `import rest_framework...` raises ImportError

import django

django.setup()

import django_idempotency
from django.core.management import call_command

needs_drf = {NEEDS_DRF!r}
imported = []
for module in pkgutil.walk_packages(django_idempotency.__path__, "django_idempotency."):
    if not module.name.startswith(needs_drf):
        importlib.import_module(module.name)
        imported.append(module.name)
print(len(imported), "modules imported")

try:
    import django_idempotency.drf
except ImportError:
    print("the DRF door needs DRF")

# Loads the test project's URLconf (the plain, ninja and session doors), runs every check.
call_command("check", fail_level="ERROR")
"""


def test_everything_but_the_drf_door_imports_and_checks_without_drf() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the DRF door needs DRF" in result.stdout
    assert "System check identified no issues" in result.stdout, result.stdout
    count = int(result.stdout.split(" modules imported")[0].split()[-1])
    assert count > 40, result.stdout  # the walk found the package, not an empty path
