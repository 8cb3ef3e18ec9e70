"""``GET /metrics``: the Prometheus exposition of this process, or of every gunicorn worker.

What django-prometheus's ``/metrics`` or ``prometheus_client.make_wsgi_app()`` does, in a few
lines, so the example needs no other package: with ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn's
workers) the workers' files are added up; otherwise the process's default registry is shown.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse


def metrics(request: HttpRequest) -> HttpResponse:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
