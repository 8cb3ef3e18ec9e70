"""The one business model every variant creates."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    sku = models.CharField(max_length=64, db_index=True)
    quantity = models.PositiveIntegerField()
    note = models.CharField(max_length=200, blank=True, default="")
    # Bytes of padding in the response: sizes the stored body without growing the request.
    pad = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sku} x{self.quantity}"
