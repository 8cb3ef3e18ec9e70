from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.contrib.staticfiles.views import serve
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView

from example_project.landing import landing
from example_project.shop.ninja_api import api as ninja_api

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("example_project.shop.urls")),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("shop/", include("example_project.shop.web_urls")),
    path("ninja/", ninja_api.urls),
    # gunicorn alone serves no static files (runserver does with DEBUG): the browser helper's
    # script for the demo and the browser tests. A real site serves collectstatic's output.
    re_path(r"^static/(?P<path>.*)$", serve, {"insecure": True}),
]

# An API: even an unexpected failure answers in problem+json, never an HTML page.
handler500 = "django_idempotency.core.problems.server_error"
