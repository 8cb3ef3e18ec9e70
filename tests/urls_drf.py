"""Routes of tests/testapp/views_drf.py, under /test/drf/."""

from django.urls import path, re_path
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
    # drf-nested-routers' lookup pattern, for a reference in a parent's URL kwarg.
    re_path(
        r"^echo-query/$",
        views_drf.EchoQueryViewSet.as_view({"post": "create"}),
        name="drf-echo-query",
    ),
    re_path(
        r"^parents/(?P<parent_pk>[^/.]+)/refund/$",
        views_drf.NestedRefundViewSet.as_view({"post": "refund"}),
        name="drf-nested-refund",
    ),
    re_path(
        r"^read-only-reference/$",
        views_drf.ReadOnlyReferenceViewSet.as_view({"post": "create"}),
        name="drf-read-only-reference",
    ),
    re_path(
        r"^read-only-default-reference/$",
        views_drf.ReadOnlyReferenceViewSet.as_view({"post": "basket"}),
        name="drf-read-only-default-reference",
    ),
    re_path(
        r"^html-only/$",
        views_drf.HtmlOnlyViewSet.as_view({"post": "create"}),
        name="drf-html-only",
    ),
]
