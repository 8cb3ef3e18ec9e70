"""How a keyed DRF answer is rendered: once, never as HTML, and stored as DRF sends it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpResponseBase
from rest_framework.request import Request
from rest_framework.response import Response

from ..conf import app_settings
from ..exceptions import KeyNotSupported

Handler = Callable[..., HttpResponseBase]


def avoid_html(view: Any, request: Request) -> None:
    """Keyed requests are answered with the view's first non-HTML renderer, or refused.

    An HTML page (the browsable API) embeds the user's CSRF token, which must never be
    stored for the key's lifetime nor replayed; an API client's retry expects data anyway.
    """
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is None or not _is_html(renderer.media_type):
        return
    for candidate in view.get_renderers():
        if not _is_html(candidate.media_type):
            request.accepted_renderer = candidate
            request.accepted_media_type = candidate.media_type
            return
    # Only HTML renderers (TemplateHTMLRenderer): refused before the claim, nothing stored.
    raise KeyNotSupported(
        "This endpoint answers only with HTML pages, which embed the CSRF token and are never "
        f"stored; send the request without the {app_settings.HEADER} header."
    )


def _is_html(media_type: str) -> bool:
    return media_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def rendered(
    view: Any, handler: Handler, request: Request, *args: Any, **kwargs: Any
) -> HttpResponseBase:
    """Run the handler as DRF's dispatch would, and render it so its bytes can be stored.

    An exception DRF answers is treated as DRF treats it (the engine's savepoint undoes the
    view's writes when DRF marks a rollback under ``ATOMIC_REQUESTS``). ``finalize_response``
    runs here, once: dispatch's own call gets this response back untouched (``finalized``).
    """
    try:
        response = handler(view, request, *args, **kwargs)
    except Exception as exc:
        response = view.handle_exception(exc)  # re-raises what DRF does not answer
    response = view.finalize_response(request, response, *args, **kwargs)
    if isinstance(response, Response):
        response.render()
    return response  # type: ignore[no-any-return]


def finalized(finalize: Handler, done: HttpResponseBase) -> Handler:
    """``finalize`` that hands ``done`` back untouched (it was finalized inside the claim)."""

    def finalize_response(
        request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if response is done:
            return response
        return finalize(request, response, *args, **kwargs)

    return finalize_response
