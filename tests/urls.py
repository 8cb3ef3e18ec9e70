from importlib.util import find_spec

from django.urls import URLPattern, URLResolver, include, path


def drf_routes() -> list[URLPattern | URLResolver]:
    """The DRF test views: routed only where DRF is installed (not under make test-nodrf)."""
    if find_spec("rest_framework") is None:
        return []
    from rest_framework.routers import SimpleRouter

    from tests.testapp.views import (
        AnonymousProbeViewSet,
        OptionalAnonymousProbeViewSet,
        OptionalProbeViewSet,
        OtherDatabaseProbeViewSet,
        OverriddenQuerysetProbeViewSet,
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
    router.register("other-db-probe", OtherDatabaseProbeViewSet, basename="other-db-probe")
    router.register(
        "overridden-queryset-probe",
        OverriddenQuerysetProbeViewSet,
        basename="overridden-queryset-probe",
    )
    return [
        path("test/", include(router.urls)),
        path("test/input/", include("tests.urls_input")),
        path("test/drf/", include("tests.urls_drf")),
        path("test/shop/", include("tests.urls_shop")),
        path("test/rev9/", include("tests.urls_rev9")),
        path("test/w11/", include("tests.urls_w11")),
    ]


urlpatterns = [
    path("", include("example_project.urls")),
    *drf_routes(),
    path("test/doors/", include("tests.urls_doors")),
    path("test/rev11/", include("tests.urls_rev11")),
]

handler500 = "django_idempotency.core.problems.server_error"
