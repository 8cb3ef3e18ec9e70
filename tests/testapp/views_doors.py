"""Test-only plain Django views behind the view decorator, the CBV mixin and the async door."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import CreateView, FormView

from django_idempotency.core.operation import current_operation
from django_idempotency.views import IdempotentViewMixin, idempotent_view
from example_project.shop.models import Payment
from tests.testapp.models import Execution

FORM = engines["django"].from_string(
    "{% load idempotency %}<form method=post>{% idempotency_key_input %}</form>"
)
SESSION_FORM = (
    '{% load idempotency %}<form method=post>{% idempotency_key_input principal="session" %}</form>'
)


def _fields(request: HttpRequest) -> dict[str, str]:
    if request.content_type == "application/json":
        return dict(json.loads(request.body or b"{}"))
    return {name: request.POST[name] for name in request.POST}


def _answer(request: HttpRequest, fields: dict[str, str]) -> HttpResponse:
    """Create an Execution (unless ``status`` says otherwise) and answer with it."""
    time.sleep(float(fields.get("sleep", 0)))
    execution = Execution.objects.create(label=fields.get("label", "plain"))
    status = int(fields.get("status", 201))
    return JsonResponse({"id": execution.pk, "label": execution.label}, status=status)


@csrf_exempt
@idempotent_view(reference_field="ref")
def plain_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return HttpResponse(FORM.render({}, request))
    return _answer(request, _fields(request))


@csrf_exempt
@idempotent_view(key_source="issued", principal="session")
def session_view(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return HttpResponse(engines["django"].from_string(SESSION_FORM).render({}, request))
    return _answer(request, _fields(request))


def open_basket(request: HttpRequest, product: str | None) -> HttpResponse:
    """A guest's basket: the view creates the session to hang it on, then answers 406 without
    a product (released by the view's own option)."""
    if request.session.session_key is None:
        request.session.save()  # the basket needs the session's key now
    request.session["basket"] = "open"
    Execution.objects.create(label="basket line")
    if not product:
        return JsonResponse({"product": ["This shop answers 406 here."]}, status=406)
    return JsonResponse({"product": product}, status=201)


@csrf_exempt
@idempotent_view(key_required=False, principal="session", extra_release_status_codes=[406])
def session_basket_view(request: HttpRequest) -> HttpResponse:
    return open_basket(request, _fields(request).get("product"))


def report_operation(label: str, using: str = "default") -> HttpResponse:
    """Create an Execution on ``using`` and answer what the engine was handed."""
    operation = current_operation()
    execution = Execution.objects.using(using).create(label=label)
    body = {"id": execution.pk, "lock_timeout": getattr(operation, "lock_timeout", None)}
    return JsonResponse(body, status=201)


@csrf_exempt
@idempotent_view(reference_url_kwarg="order", lock_timeout=0.25)
def pay_order_view(request: HttpRequest, order: str) -> HttpResponse:
    return report_operation(f"pay {order}")


@csrf_exempt
@idempotent_view(database="other")
def other_database_view(request: HttpRequest) -> HttpResponse:
    return report_operation("elsewhere", using="other")


@csrf_exempt
@idempotent_view
async def async_view(request: HttpRequest) -> HttpResponse:
    fields = json.loads(request.body or b"{}")
    await asyncio.sleep(float(fields.get("sleep", 0)))
    execution = await Execution.objects.acreate(label=fields.get("label", "async"))
    status = int(fields.get("status", 201))
    return JsonResponse({"id": execution.pk, "label": execution.label}, status=status)


class ClassView(IdempotentViewMixin, View):
    idempotency_key_source = "issued"

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(FORM.render({}, request))

    def post(self, request: HttpRequest) -> HttpResponse:
        return _answer(request, _fields(request))


class AsyncClassView(IdempotentViewMixin, View):
    async def post(self, request: HttpRequest) -> HttpResponse:
        fields = json.loads(request.body or b"{}")
        execution = await Execution.objects.acreate(label=fields.get("label", "async-cbv"))
        status = int(fields.get("status", 201))
        return JsonResponse({"id": execution.pk}, status=status)


class PaymentForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Payment
        fields = ["order", "amount"]


class PaymentCreateView(IdempotentViewMixin, CreateView):  # type: ignore[type-arg]
    """One payment per order, whatever the key: the reference as the form would save it."""

    form_class = PaymentForm
    template_name = "shop/checkout.html"
    idempotency_reference_field = "order"

    def form_valid(self, form: PaymentForm) -> HttpResponse:
        form.instance.owner = self.request.user
        form.instance.charge_id = "ch_test"
        payment = form.save()
        return JsonResponse({"id": payment.pk}, status=201)


# -- template responses and forms, with and without a key ----------------------------------

LABEL_PAGE = engines["django"].from_string(
    "{% if form %}{{ form.as_p }}{% else %}<p>Saved {{ label }} as #{{ id }}.</p>{% endif %}"
)


@csrf_exempt
@idempotent_view
def template_view(request: HttpRequest) -> TemplateResponse:
    """Answers with an unrendered ``TemplateResponse``, as ``render()``-less views do."""
    execution = Execution.objects.create(label=request.POST.get("label", "page"))
    context = {"label": execution.label, "id": execution.pk}
    return TemplateResponse(request, LABEL_PAGE, context, status=201)  # type: ignore[arg-type]


class LabelForm(forms.Form):
    label = forms.CharField(max_length=20)


class LabelFormView(FormView):  # type: ignore[type-arg]
    """A plain ``FormView`` without the package: the behaviour the mixin must keep keyless."""

    form_class = LabelForm

    def render_to_response(self, context: dict[str, Any], **kwargs: Any) -> TemplateResponse:
        return TemplateResponse(self.request, LABEL_PAGE, context, **kwargs)  # type: ignore[arg-type]

    def form_valid(self, form: LabelForm) -> HttpResponse:
        execution = Execution.objects.create(label=form.cleaned_data["label"])
        return self.render_to_response({"label": execution.label, "id": execution.pk})


class OptionalKeyFormView(IdempotentViewMixin, LabelFormView):
    """Keys optional: a request without one must be answered exactly as ``LabelFormView``."""

    idempotency_key_required = False


class OrderActionView(IdempotentViewMixin, View):
    """One class for several unnamed routes (``as_view(kind=...)``), one action per order each."""

    kind = ""
    idempotency_reference_field = "order"

    def post(self, request: HttpRequest) -> HttpResponse:
        fields = _fields(request)
        execution = Execution.objects.create(label=f"{self.kind} {fields['order']}")
        return JsonResponse({"id": execution.pk, "label": execution.label}, status=201)
