from django.contrib import admin
from django.contrib.auth.views import LoginView
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("example_project.shop.urls")),
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("shop/", include("example_project.shop.web_urls")),
]

# An API: even an unexpected failure answers in problem+json, never an HTML page.
handler500 = "django_idempotency.problems.server_error"
