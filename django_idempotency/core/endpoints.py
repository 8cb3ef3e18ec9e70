"""The endpoint part of a scope, one rule for every HTTP door: the route the request resolved to.

The route is the URL name where the URL has one (Django resolves a name, namespace included, to
one pattern; scopes of named POST routes are what they were before methods were added), else the
URL pattern (``shop/pay/``): never the view's name, which two routes can share. A method other
than POST is put in front (``DELETE payment-detail``), since one URL serves several operations.
An issued key is bound to the same string (``issued_keys``), so issuer and view agree.
"""

from __future__ import annotations

from typing import Any


def route_endpoint(request: Any, *, method: str | None = None, by_name: bool = True) -> str | None:
    """The endpoint of ``request`` (of ``method`` when given); ``None`` if it was not resolved.

    ``by_name=False`` names the route by its pattern even when the URL has a name: django-ninja
    names URLs after the operation's function, which two routers can share (``create``).
    """
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    route = match.view_name if by_name and match.url_name else match.route
    verb = (method or getattr(request, "method", None) or "POST").upper()
    return route if verb == "POST" else f"{verb} {route}"
