"""The example's HTML door: a checkout form, double-click safe through a server-issued key."""

from __future__ import annotations

from django import forms
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import QuerySet
from django.http import HttpResponseBase, HttpResponseRedirect
from django.views.generic import CreateView, DetailView

from django_idempotency.views import IdempotentViewMixin

from .external import sleep_ms
from .models import Order


class CheckoutForm(forms.ModelForm):  # type: ignore[type-arg]
    # Bounded by the column, as in the API: a larger number is a form error, not a 500.
    quantity = forms.IntegerField(min_value=1, max_value=2_147_483_647)

    class Meta:
        model = Order
        fields = ["item", "quantity"]


class CheckoutView(LoginRequiredMixin, IdempotentViewMixin, CreateView):  # type: ignore[type-arg]
    """``POST /shop/checkout/``: one order per rendered form, however often it is submitted."""

    form_class = CheckoutForm
    template_name = "shop/checkout.html"
    # Only the hidden key the form was rendered with: a made-up key is a 400.
    idempotency_key_source = "issued"

    def form_valid(self, form: CheckoutForm) -> HttpResponseBase:
        # EXAMPLE_CHECKOUT_DELAY_MS: a slow provider, so a second click finds it in flight.
        sleep_ms("EXAMPLE_CHECKOUT_DELAY_MS")
        form.instance.owner = self.request.user
        order = form.save()
        response = HttpResponseRedirect(f"/shop/orders/{order.pk}/")
        response.status_code = 303  # See Other: the browser GETs the order page
        return response


class OrderDetailView(LoginRequiredMixin, DetailView):  # type: ignore[type-arg]
    template_name = "shop/order_detail.html"
    context_object_name = "order"

    def get_queryset(self) -> QuerySet[Order]:
        return Order.objects.filter(owner=self.request.user)
