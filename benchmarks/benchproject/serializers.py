from __future__ import annotations

from rest_framework import serializers

from .models import Order

MAX_PAD = 256 * 1024


class OrderSerializer(serializers.ModelSerializer):
    pad = serializers.IntegerField(min_value=0, max_value=MAX_PAD, default=0, write_only=True)
    padding = serializers.SerializerMethodField()

    class Meta:
        model = Order
        fields = ["id", "sku", "quantity", "note", "pad", "padding", "created_at"]

    def get_padding(self, order: Order) -> str:
        return "x" * order.pad
