"""A page that places orders with ``fetch()`` through the browser helper (idempotency.js): a key
per submission, kept in sessionStorage until the answer arrives."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from django_idempotency.views import idempotent_view

from .external import sleep_ms
from .web import CheckoutForm


@login_required
@idempotent_view  # the helper's key comes in the Idempotency-Key header
def quick_order(request: HttpRequest) -> HttpResponse:
    """``GET /shop/quick-order/``: the page; ``POST``: place the order, answer JSON."""
    if request.method != "POST":
        return render(request, "shop/quick_order.html", {"form": CheckoutForm()})
    form = CheckoutForm(request.POST)
    if not form.is_valid():
        # 400 releases the key: the corrected form may be sent again.
        return JsonResponse({"detail": "Check the fields.", "errors": form.errors}, status=400)
    # EXAMPLE_CHECKOUT_DELAY_MS: a slow provider, so a click or a reload finds it in flight.
    sleep_ms("EXAMPLE_CHECKOUT_DELAY_MS")
    form.instance.owner = request.user
    order = form.save()
    return JsonResponse(
        {
            "id": order.pk,
            "item": order.item,
            "quantity": order.quantity,
            "url": f"/shop/orders/{order.pk}/",
        },
        status=201,
    )
