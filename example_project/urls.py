from importlib.util import find_spec

from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.contrib.staticfiles.views import serve
from django.urls import URLPattern, URLResolver, include, path, re_path

from example_project.landing import landing
from example_project.metrics import metrics
from example_project.shop.ninja_api import api as ninja_api


def drf_routes() -> list[URLPattern | URLResolver]:
    """The DRF API and its schema. Without DRF installed (the tests of make test-nodrf) the
    rest of the project still runs: the HTML checkout, the ninja API, the admin."""
    if find_spec("rest_framework") is None:
        return []
    from drf_spectacular.views import SpectacularAPIView

    return [
        path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
        path("api/", include("example_project.shop.urls")),
    ]


urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    *drf_routes(),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("shop/", include("example_project.shop.web_urls")),
    path("ninja/", ninja_api.urls),
    # gunicorn alone serves no static files (runserver does with DEBUG): the browser helper's
    # script for the demo and the browser tests. A real site serves collectstatic's output.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]
# The package's metrics (docs/metrics.md) for Prometheus to scrape, when prometheus_client is in.
if find_spec("prometheus_client") is not None:
    urlpatterns.append(path("metrics", metrics, name="metrics"))

# An API: even an unexpected failure answers in problem+json, never an HTML page.
handler500 = "django_idempotency.core.problems.server_error"
