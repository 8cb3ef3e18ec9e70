from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from example_project.landing import landing

urlpatterns = [
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("example_project.shop.urls")),
]

# An API: even an unexpected failure answers in problem+json, never an HTML page.
handler500 = "django_idempotency.problems.server_error"
