"""The example project's landing page and the demo's admin login."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import resolve

from example_project.landing import ENDPOINTS

pytestmark = [pytest.mark.drf, pytest.mark.django_db]


def test_the_landing_page_lists_every_endpoint_with_curl() -> None:
    response = Client().get("/")
    assert response.status_code == 200
    page = response.content.decode()
    for _, path, _ in ENDPOINTS:
        assert f'href="{path}"' in page
        resolve(path)  # a route that exists
    assert "curl -i -u demo:demo -X POST http://testserver/api/orders/" in page


def test_the_demo_user_can_log_in_to_the_admin() -> None:
    out = StringIO()
    call_command("seed_demo", "--base-url", "http://127.0.0.1:9999", stdout=out)
    assert "Admin: http://127.0.0.1:9999/admin/ (log in as demo / demo)" in out.getvalue()
    client = Client()
    assert client.login(username="demo", password="demo")
    response = client.get("/admin/django_idempotency/idempotencyrecord/")
    assert response.status_code == 200


def test_the_landing_page_lists_every_door_of_the_example_project() -> None:
    paths = {path for _, path, _ in ENDPOINTS}
    for door in ("/api/transfers/", "/api/idempotency-keys/", "/ninja/orders/", "/shop/checkout/"):
        assert door in paths, door
