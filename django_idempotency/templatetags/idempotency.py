"""``{% idempotency_key_input %}``: a hidden input holding a fresh server-issued key."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..conf import app_settings
from ..endpoints import route_endpoint
from ..issued_keys import issue_key
from ..principals import request_principal, start_guest_session

register = template.Library()


@register.simple_tag(takes_context=True)
def idempotency_key_input(context: Any, endpoint: str | None = None) -> SafeString:
    """Render ``<input type="hidden" name="idempotency_key" value="...">``.

    The key is bound to the visitor (user, else session) and to ``endpoint``: the endpoint of
    the view the form posts to (its URL name, or its ``idempotency_scope``), by default that of
    the page being rendered (a form that posts back to its own URL needs no argument).
    """
    request = context["request"]
    if endpoint is None:
        # The form posts back here: the endpoint the view computes for that POST.
        endpoint = route_endpoint(request, method="POST") or ""
    start_guest_session(request)
    issued = issue_key(request_principal(request, guest_sessions=True), endpoint)
    return format_html(
        '<input type="hidden" name="{}" value="{}">', app_settings.ISSUED_KEY_FIELD, issued.key
    )
