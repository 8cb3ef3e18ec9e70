"""The test URLs plus the doors of ``tests.testapp.issued_doors`` (``@pytest.mark.urls``)."""

from django.urls import include, path

from tests.testapp import issued_doors

urlpatterns = [
    path("test/issued/plain/", issued_doors.plain_view, name="issued-plain"),
    path("test/issued/ninja/", issued_doors.api.urls),
    path("", include("tests.urls")),
]

handler500 = "django_idempotency.core.problems.server_error"
