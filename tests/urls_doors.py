from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from tests.testapp import views_doors
from tests.testapp.ninja_doors import api as ninja_api

urlpatterns = [
    path("plain/", views_doors.plain_view, name="plain"),
    path("session/", views_doors.session_view, name="session"),
    path("session-basket/", views_doors.session_basket_view, name="session-basket"),
    path("orders/<str:order>/pay/", views_doors.pay_order_view, name="pay-order"),
    path("other-database/", views_doors.other_database_view, name="other-database"),
    path("async/", views_doors.async_view, name="async"),
    path("class/", csrf_exempt(views_doors.ClassView.as_view()), name="class"),
    path("ninja/", ninja_api.urls),
    path("payment/", csrf_exempt(views_doors.PaymentCreateView.as_view()), name="payment"),
    path("async-class/", csrf_exempt(views_doors.AsyncClassView.as_view()), name="async-class"),
    # Unnamed, one view class: two routes all the same.
    path("pay/", csrf_exempt(views_doors.OrderActionView.as_view(kind="payment"))),
    path("refund/", csrf_exempt(views_doors.OrderActionView.as_view(kind="refund"))),
    path("form-a/", csrf_exempt(views_doors.ClassView.as_view())),
    path("form-b/", csrf_exempt(views_doors.ClassView.as_view())),
]
urlpatterns += [
    path("template/", views_doors.template_view, name="template"),
    path("form/", csrf_exempt(views_doors.LabelFormView.as_view()), name="form"),
    path(
        "form-optional-key/",
        csrf_exempt(views_doors.OptionalKeyFormView.as_view()),
        name="form-optional-key",
    ),
]
