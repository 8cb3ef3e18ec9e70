from decimal import Decimal

from rest_framework import serializers

from .models import Note, Order, Payment, Refund, Transfer


class OrderSerializer(serializers.ModelSerializer):
    # Bounded by the column: a larger number is a 400, not a database error.
    quantity = serializers.IntegerField(min_value=1, max_value=2_147_483_647)

    class Meta:
        model = Order
        fields = ["id", "item", "quantity", "created_at"]
        read_only_fields = ["id", "created_at"]


class PaymentSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Payment
        fields = ["id", "order", "amount", "charge_id"]
        read_only_fields = ["id", "charge_id"]

    def validate_order(self, order: Order) -> Order:
        if order.owner_id != self.context["request"].user.pk:
            raise serializers.ValidationError("No such order.")
        return order


class NoteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Note
        fields = ["id", "text", "created_at"]
        read_only_fields = ["id", "created_at"]


class RefundSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Refund
        fields = ["id", "payment", "amount", "created_at"]
        read_only_fields = ["id", "payment", "created_at"]

    def validate_amount(self, amount: Decimal) -> Decimal:
        payment = self.context["payment"]
        if amount > payment.amount:
            raise serializers.ValidationError(f"More than the payment's amount ({payment.amount}).")
        return amount


class TransferSerializer(serializers.ModelSerializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))

    class Meta:
        model = Transfer
        fields = ["id", "amount", "to", "created_at"]
        read_only_fields = ["id", "created_at"]
