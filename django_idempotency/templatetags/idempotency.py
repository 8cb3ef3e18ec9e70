"""``{% idempotency_key_input %}``: a hidden input holding a fresh server-issued key."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..conf import app_settings
from ..core.endpoints import route_endpoint
from ..core.issued_keys import issue_key
from ..core.principals import request_principal, start_guest_session, user_principal

register = template.Library()


@register.simple_tag(takes_context=True)
def idempotency_key_input(
    context: Any, endpoint: str | None = None, principal: str | None = None
) -> SafeString:
    """Render ``<input type="hidden" name="idempotency_key" value="...">``.

    The key is bound to the visitor and to ``endpoint``: the endpoint of the view the form
    posts to (its URL name, or its ``idempotency_scope``), by default that of the page being
    rendered (a form that posts back to its own URL needs no argument). ``principal`` names the
    view's ``idempotency_principal`` (default: ``IDEMPOTENCY_PRINCIPAL``): with ``"user"`` an
    anonymous visitor gets no key, and no session is created for a mere page view (a keyed
    submission of theirs would be refused anyway); ``"session"`` starts a stored session for a
    guest and binds the key to it.
    """
    request = context["request"]
    if endpoint is None:
        # The form posts back here: the endpoint the view computes for that POST.
        endpoint = route_endpoint(request, method="POST") or ""
    if principal is None:
        principal = app_settings.PRINCIPAL
    if principal == "user":
        if user_principal(getattr(request, "user", None)) is None:
            return SafeString("")
    elif principal == "session":
        start_guest_session(request)
    else:
        raise template.TemplateSyntaxError(
            f'idempotency_key_input: principal must be "user" or "session", not {principal!r}.'
        )
    issued = issue_key(request_principal(request, guest_sessions=True), endpoint)
    return format_html(
        '<input type="hidden" name="{}" value="{}">', app_settings.ISSUED_KEY_FIELD, issued.key
    )


@register.simple_tag
def idempotency_script() -> SafeString:
    """``<script src=".../django_idempotency/idempotency.js" defer>``: the browser helper for
    pages that post with JavaScript (forms marked ``data-idempotent``; docs/client.md)."""
    from django.templatetags.static import static

    return format_html(
        '<script src="{}" defer></script>', static("django_idempotency/idempotency.js")
    )
