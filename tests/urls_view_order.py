"""Routes a view that lists IdempotentAPIViewMixin after DRF's view class (tests/operations/
test_checks.py)."""

from django.urls import path

from tests.testapp import views_checks

urlpatterns = [
    path("misordered/", views_checks.MixinAfterViewClassView.as_view()),
]
