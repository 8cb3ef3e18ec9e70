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
    ("GET", "/api/schema/", "the OpenAPI schema, with the Idempotency-Key header"),
    ("GET", "/admin/", "stored keys, replays and conflicts (login demo / demo)"),
]


def landing(request: HttpRequest) -> HttpResponse:
    base_url = request.build_absolute_uri("/").rstrip("/")
    return render(request, "landing.html", {"endpoints": ENDPOINTS, "base_url": base_url})
