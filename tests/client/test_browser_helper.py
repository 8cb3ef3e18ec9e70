"""The browser helper as shipped: the static file in the package, the template tag that
includes it, and the example's fetch() page that uses it (run in a browser: test_browser.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.template import Context, Template
from django.test import Client

import django_idempotency
from example_project.shop.models import Order

QUICK_ORDER = "/shop/quick-order/"
SCRIPT = '<script src="/static/django_idempotency/idempotency.js" defer></script>'


def test_the_script_ships_inside_the_package_and_the_tag_includes_it() -> None:
    found = finders.find("django_idempotency/idempotency.js")
    assert found is not None
    assert found.startswith(django_idempotency.__path__[0])
    assert Template("{% load idempotency %}{% idempotency_script %}").render(Context()) == SCRIPT


@pytest.mark.django_db
def test_the_quick_order_page_loads_the_helper_and_places_an_order_once_per_key(
    user: Any,
) -> None:
    client = Client()
    client.force_login(user)
    page = client.get(QUICK_ORDER)
    assert page.status_code == 200
    assert SCRIPT in page.content.decode()
    assert 'data-idempotent="quick-order"' in page.content.decode()

    def post(key: str, quantity: int = 2) -> Any:
        return client.post(
            QUICK_ORDER,
            {"item": "lamp", "quantity": quantity},
            headers={"Idempotency-Key": key, "Accept": "application/json"},
        )

    first, again = post("k-1"), post("k-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.content == again.content
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.filter(item="lamp").count() == 1
    # Another body under the same key: refused as JSON the helper shows, nothing placed.
    mismatch = post("k-1", quantity=3)
    assert mismatch.status_code == 422
    assert "detail" in json.loads(mismatch.content)
    # A refused form releases the key (400): corrected, it may be sent again.
    assert post("k-2", quantity=0).status_code == 400
    assert post("k-2").status_code == 201
    assert Order.objects.filter(item="lamp").count() == 2


@pytest.mark.django_db
def test_the_quick_order_page_needs_a_login(client: Client) -> None:
    assert client.get(QUICK_ORDER).status_code == 302
