"""Routes of tests/testapp/views_rev9.py, under /test/rev9/."""

from django.urls import re_path

from tests.testapp import views_rev9

urlpatterns = [
    re_path(
        r"^echo-query/$",
        views_rev9.EchoQueryViewSet.as_view({"post": "create"}),
        name="rev9-echo-query",
    ),
    re_path(
        r"^parents/(?P<parent_pk>[^/.]+)/refund/$",
        views_rev9.NestedRefundViewSet.as_view({"post": "refund"}),
        name="rev9-nested-refund",
    ),
    re_path(
        r"^read-only-reference/$",
        views_rev9.ReadOnlyReferenceViewSet.as_view({"post": "create"}),
        name="rev9-read-only-reference",
    ),
    re_path(
        r"^read-only-default-reference/$",
        views_rev9.ReadOnlyReferenceViewSet.as_view({"post": "basket"}),
        name="rev9-read-only-default-reference",
    ),
    re_path(
        r"^html-only/$",
        views_rev9.HtmlOnlyViewSet.as_view({"post": "create"}),
        name="rev9-html-only",
    ),
]
