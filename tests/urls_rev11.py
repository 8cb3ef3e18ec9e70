from django.urls import path

from tests.testapp.views_rev11 import api

urlpatterns = [path("ninja/", api.urls)]
