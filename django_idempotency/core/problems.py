"""Rendering of RFC 9457 problem details as Django responses."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, HttpResponse

from ..conf import app_settings
from ..exceptions import IdempotencyError

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_type(code: str) -> str:
    return f"{app_settings.PROBLEM_TYPE_BASE}{code}"


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_document(
    *, status: int, code: str, title: str, detail: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def render_json(document: dict[str, Any]) -> bytes:
    """JSON spelled as DRF's ``JSONRenderer`` spells it by default (compact, UTF-8), so the
    layer's own problems and the API's look alike byte for byte."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def problem_response(
    document: dict[str, Any], headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(
        render_json(document),
        status=int(document["status"]),
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(error: IdempotencyError) -> HttpResponse:
    document = problem_document(
        status=error.get_status_code(),
        code=error.default_code,
        title=error.title,
        detail=error.detail,
    )
    return problem_response(document, error.headers)


def server_error(request: HttpRequest) -> HttpResponse:
    """A ``handler500`` that answers in problem+json, for APIs that never want an HTML page."""
    document = problem_document(
        status=500,
        code="server-error",
        title=status_title(500),
        detail=(
            "The server failed to handle the request. Retry the same request with the same "
            "Idempotency-Key: if it was performed after all, you get its answer, not a second run."
        ),
    )
    return problem_response(document)
