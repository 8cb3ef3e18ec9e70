from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.testapp.views import (
    AnonymousProbeViewSet,
    OptionalAnonymousProbeViewSet,
    OptionalProbeViewSet,
    ProbeViewSet,
    ShortTtlProbeViewSet,
)

router = SimpleRouter()
router.register("probe", ProbeViewSet, basename="probe")
router.register("optional-probe", OptionalProbeViewSet, basename="optional-probe")
router.register("anon-probe", AnonymousProbeViewSet, basename="anon-probe")
router.register(
    "optional-anon-probe", OptionalAnonymousProbeViewSet, basename="optional-anon-probe"
)
router.register("ttl-probe", ShortTtlProbeViewSet, basename="ttl-probe")

urlpatterns = [
    path("", include("example_project.urls")),
    path("test/", include(router.urls)),
]
