"""factory-boy factories for users, the example's rows and idempotency records."""

from __future__ import annotations

from datetime import timedelta
from importlib.util import find_spec

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Order


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    # A fixed, pre-hashed password ("secret"): hashing once per user would dominate the suite.
    password = factory.django.Password("secret")


# DRF's API token: its app is installed with DRF only (not under make test-nodrf).
if find_spec("rest_framework") is not None:

    class TokenFactory(factory.django.DjangoModelFactory):
        class Meta:
            model = "authtoken.Token"

        user = factory.SubFactory(UserFactory)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    owner = factory.SubFactory(UserFactory)
    item = factory.Sequence(lambda n: f"item {n}")
    quantity = 1


class IdempotencyRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdempotencyRecord

    scope = "probe-list|auth.user:1"
    key = factory.Sequence(lambda n: f"key-{n}")
    fingerprint = "0" * 64
    state = IdempotencyRecord.State.COMPLETED
    request_method = "POST"
    request_path = "/test/probe/"
    response_status = 201
    response_headers = factory.LazyFunction(lambda: [["Content-Type", "application/json"]])
    response_body = b'{"ok": true}'
    created_at = factory.LazyFunction(timezone.now)
    completed_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=24))
