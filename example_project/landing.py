"""``GET /``: what the example project serves and how to try it with curl."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# (method, path, what it does); every route of the example project.
ENDPOINTS = [
    ("POST", "/api/orders/", "create an order (Idempotency-Key required)"),
    ("GET", "/api/orders/", "your orders"),
    ("POST", "/api/payments/", "pay an order: one payment per order, whatever the key"),
    ("GET", "/api/payments/", "your payments (?order=ID)"),
    ("POST", "/api/notes/", "create a note (Idempotency-Key optional)"),
    ("GET", "/api/notes/", "your notes"),
    (
        "POST",
        "/api/idempotency-keys/",
        "issue a key for the endpoints that accept only issued keys",
    ),
    ("POST", "/api/transfers/", "a transfer: only a key from /api/idempotency-keys/ is accepted"),
    ("POST", "/ninja/orders/", "create an order through django-ninja (Bearer: the API token)"),
    ("GET", "/ninja/docs", "the django-ninja API and its OpenAPI page"),
    ("GET", "/shop/checkout/", "an HTML form with a server-issued key (log in as demo / demo)"),
    ("GET", "/api/schema/", "the OpenAPI schema, with the Idempotency-Key header"),
    ("GET", "/admin/", "stored keys, replays and conflicts (login demo / demo)"),
    ("GET", "/metrics", "Prometheus metrics: outcomes, waits, purge and outbox backlog"),
]


def landing(request: HttpRequest) -> HttpResponse:
    base_url = request.build_absolute_uri("/").rstrip("/")
    return render(request, "landing.html", {"endpoints": ENDPOINTS, "base_url": base_url})
