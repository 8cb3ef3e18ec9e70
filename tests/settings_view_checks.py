"""The test settings with the URLconf the view checks judge (for ``manage.py check``)."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.urls_view_checks"
SILENCED_SYSTEM_CHECKS = ["django_idempotency.W001"]  # judge every view check here
