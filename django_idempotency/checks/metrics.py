"""The check that every observer ``IDEMPOTENCY_METRICS`` names can be loaded (its extra is in)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.core.checks import CheckMessage, Error, Tags
from django.utils.module_loading import import_string

from ..conf import METRICS_EXPORTERS, app_settings

TAGS = (Tags.compatibility,)


def check_metrics_installed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``django_idempotency.E026``: a built-in exporter whose library is missing, or an
    observer path that does not import."""
    try:
        names = app_settings.METRICS
    except TypeError:
        return []  # not a list: E002 says so
    messages: list[CheckMessage] = []
    for name in names:
        if name in METRICS_EXPORTERS:
            library = METRICS_EXPORTERS[name][1]
            try:
                import_module(library)
            except ImportError:
                messages.append(
                    Error(
                        f"IDEMPOTENCY_METRICS names {name!r}, but {library} is not installed.",
                        hint=f"pip install 'django-idempotency[{name}]'",
                        id="django_idempotency.E026",
                    )
                )
        elif "." in name:
            try:
                import_string(name)
            except ImportError as exc:
                messages.append(
                    Error(
                        f"IDEMPOTENCY_METRICS names {name!r}, which cannot be imported: {exc}",
                        id="django_idempotency.E026",
                    )
                )
    return messages
