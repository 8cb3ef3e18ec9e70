"""Routes of tests/testapp/views_checks.py, nested and decorated as projects route views."""

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.testapp import views_checks

router = SimpleRouter()
router.register("hidden", views_checks.HiddenCreateViewSet, basename="hidden")
router.register("decorated", views_checks.DecoratedCreateViewSet, basename="decorated")
router.register("ordered", views_checks.OrderedCreateViewSet, basename="ordered")

urlpatterns = [
    path("api/v1/", include((router.urls, "v1"))),
    path(
        "nested/",
        include(
            [
                path("without/", login_required(views_checks.WithoutMixinView.as_view())),
                path("subclass/", views_checks.MixinInSubclassView.as_view()),
                path("override/", views_checks.UndecoratedOverrideView.as_view()),
            ]
        ),
    ),
]
