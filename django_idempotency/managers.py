"""Query logic for idempotency records."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from .models import IdempotencyRecord  # noqa: F401


class IdempotencyRecordQuerySet(models.QuerySet["IdempotencyRecord"]):
    def live(self, now: datetime | None = None) -> IdempotencyRecordQuerySet:
        return self.filter(expires_at__gt=now or timezone.now())

    def expired(self, now: datetime | None = None) -> IdempotencyRecordQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())
