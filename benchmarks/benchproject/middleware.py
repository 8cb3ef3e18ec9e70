"""Competitors' middlewares, each confined to its own URL prefix."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from drf_idempotency.middleware import IdempotencyMiddleware
from rest_framework_idempotency_key.middleware import IdempotencyKeyMiddleware

DRF_IDEMPOTENCY_MIDDLEWARE_PREFIX = "/drf-idempotency-mw/"
REST_FRAMEWORK_IDEMPOTENCY_KEY_PREFIX = "/djangorestframework-idempotency-key/"


class DrfIdempotencyOnItsPrefix(IdempotencyMiddleware):
    """drf-idempotency's middleware (its quick start): answers replays before the view runs."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(DRF_IDEMPOTENCY_MIDDLEWARE_PREFIX):
            return super().__call__(request)
        return self.get_response(request)


class RestFrameworkIdempotencyKeyOnItsPrefix(IdempotencyKeyMiddleware):
    """djangorestframework-idempotency-key's middleware: claims the key before the view."""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(REST_FRAMEWORK_IDEMPOTENCY_KEY_PREFIX):
            return super().__call__(request)
        return self.get_response(request)
