"""The async bridge of every door (``run_in_one_thread``): the phases' spans stay children of
the request's span across the hop to the sync thread, and the async view's own spans, across
its ``await``, are children of ``idempotency.view``."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpResponse, HttpResponseBase
from opentelemetry import trace

from django_idempotency.core.engine import perform_once
from django_idempotency.core.policy import run_in_one_thread
from django_idempotency.once.operations import operation
from tests.metrics.conftest import OTel, Readings, finished_spans

pytestmark = pytest.mark.django_db(transaction=True)


def test_spans_follow_the_async_view_across_threads(readings: Readings, otel: OTel) -> None:
    tracer = trace.get_tracer("tests")
    prepared = operation(scope="async.charge", key="k", fingerprint="f")

    async def view() -> HttpResponseBase:
        await asyncio.sleep(0)
        with tracer.start_as_current_span("gateway call"):
            await asyncio.sleep(0)
        return HttpResponse(status=201)

    async def request() -> int:
        with tracer.start_as_current_span("POST /charge"):
            response = await run_in_one_thread(lambda run: perform_once(prepared, run), view)
        await sync_to_async(connections.close_all, thread_sensitive=True)()
        return response.status_code

    assert asyncio.run(request()) == 201
    spans = {span.name: span for span in finished_spans(otel)}
    request_span = spans["POST /charge"].context.span_id
    view_span = spans["idempotency.view"].context.span_id
    for name in ("idempotency.claim", "idempotency.view", "idempotency.store"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == request_span, name
    assert spans["gateway call"].parent is not None
    assert spans["gateway call"].parent.span_id == view_span
