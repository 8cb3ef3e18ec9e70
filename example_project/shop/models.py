"""The example's business rows: orders, their payments and refunds, and notes."""

from django.conf import settings
from django.db import models


class Order(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    item = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.quantity} x {self.item}"


class Payment(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    # Deliberately not unique: "one payment per order" is the idempotency reference's job here.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="payments")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    charge_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.amount} for order {self.order_id} ({self.charge_id})"


class Note(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.text[:50]


class Shipment(models.Model):
    # Not unique either: "one shipment per order" is the idempotent task's job.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="shipments")
    booking_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.booking_id})"


# -- The outside world: rows the fake gateway and carrier keep on their own connection. -------


class GatewayCharge(models.Model):
    """A charge as the payment gateway records it (its ledger, not ours)."""

    id = models.CharField(primary_key=True, max_length=64)
    order = models.BigIntegerField()  # the gateway knows our order id only as metadata
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    # Unique, as at Stripe: a second charge with the same key answers with the first.
    idempotency_key = models.CharField(max_length=255, null=True, unique=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.id}: {self.amount} for order {self.order}"


class CarrierBooking(models.Model):
    """A parcel pickup as the carrier records it."""

    id = models.CharField(primary_key=True, max_length=64)
    order = models.BigIntegerField()
    idempotency_key = models.CharField(max_length=255, null=True, unique=True)  # noqa: DJ001
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.id} for order {self.order}"


class Refund(models.Model):
    # Deliberately not unique per payment: "one refund per payment" is the reference's job.
    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="refunds")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    refund_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.amount} back from payment {self.payment_id} ({self.refund_id})"


class Transfer(models.Model):
    """A money transfer; its API only accepts server-issued keys."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    to = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.amount} to {self.to}"
