from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.testapp.views import OptionalProbeViewSet, ProbeViewSet

router = SimpleRouter()
router.register("probe", ProbeViewSet, basename="probe")
router.register("optional-probe", OptionalProbeViewSet, basename="optional-probe")

urlpatterns = [
    path("", include("example_project.urls")),
    path("test/", include(router.urls)),
]
