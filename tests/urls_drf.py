"""Routes of tests/testapp/views_drf.py, under /test/drf/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from tests.testapp import views_drf

router = SimpleRouter()
for prefix, viewset in [
    ("catches-integrity-error", views_drf.CatchesIntegrityErrorViewSet),
    ("no-queryset", views_drf.NoQuerysetViewSet),
    ("finalizing", views_drf.FinalizingViewSet),
    ("wrapped-create", views_drf.WrappedCreateViewSet),
    ("decorated-create", views_drf.DecoratedCreateViewSet),
    ("releasing-406", views_drf.Releasing406ViewSet),
    ("storing-406", views_drf.Storing406ViewSet),
    ("unwrapped-routes", views_drf.UnwrappedRoutesViewSet),
    ("opted-out-routes", views_drf.OptedOutRoutesViewSet),
    ("shadowing", views_drf.ShadowingViewSet),
    ("browsable", views_drf.BrowsableViewSet),
    ("decorated-updates", views_drf.DecoratedUpdatesViewSet),
    ("held-updates", views_drf.HeldUpdatesViewSet),
]:
    router.register(prefix, viewset, basename=f"drf-{prefix}")

urlpatterns = [
    *router.urls,
    path("plain/", views_drf.PlainAPIView.as_view(), name="drf-plain"),
    path("generic-create/", views_drf.GenericCreateView.as_view(), name="drf-generic-create"),
    path(
        "generic-list-create/",
        views_drf.GenericListCreateView.as_view(),
        name="drf-generic-list-create",
    ),
    path("without-mixin/", views_drf.WithoutMixinAPIView.as_view(), name="drf-without-mixin"),
]
