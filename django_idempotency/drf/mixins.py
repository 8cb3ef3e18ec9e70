"""The DRF view mixins: ``IdempotentAPIViewMixin`` (the policy of every ``@idempotent``
handler, speaking DRF) and ``IdempotentCreateMixin`` (``create()`` made idempotent)."""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponseBase
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from ..conf import app_settings
from ..core.fingerprint import read_body
from ..core.policy import HttpPolicy, configure, raw_header_key
from ..exceptions import KeyNotSupported
from .decorators import Handler, handler_options, idempotent, idempotent_options
from .handlers import refused
from .references import lookup_value, reference_for, serializer_field

_H = TypeVar("_H", bound=Handler)


class IdempotentAPIViewMixin(HttpPolicy):
    """The attributes and ``get_idempotency_*`` hooks of every ``@idempotent`` handler
    (``core.policy.HttpPolicy``) on a DRF ``APIView``.

    Also reads the raw body early for keyed requests and refuses a key on an unsafe handler
    that is not decorated (``idempotency_refuse_unwrapped_keys``).
    """

    #: A key on an unsafe handler that is not ``@idempotent`` is a 400 problem; ``False``
    #: ignores such keys (the request then runs unprotected).
    idempotency_refuse_unwrapped_keys: bool = True
    # API clients send the key in the header; a serializer may have a field of that name.
    reads_form_keys = False
    idempotency_door = "drf"

    request: Request

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        keyed = request.method not in SAFE_METHODS and raw_header_key(request) is not None
        if keyed:
            # Read the raw body before authentication runs: the CSRF check of session auth
            # parses the stream, after which the bytes the fingerprint needs are gone.
            read_body(request._request)
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if request.method not in SAFE_METHODS:
            self._wrap_own_generic_handler(request)
        if keyed and self.idempotency_refuse_unwrapped_keys:
            self._refuse_unwrapped_key(request)

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        return super().handle_exception(refused(exc))  # type: ignore[misc,no-any-return]

    def get_idempotency_reference(self, request: Request) -> str | None:
        """``"<field>:<identity>"``: what the serializer's field resolves the value to.

        The serializer is the view's (``references.serializer_field``); any related field
        names the related object's primary key, other fields their internal value; a value the
        field refuses is a 400 before any lookup. A URL kwarg names the view's lookup's key.
        """
        name = self.idempotency_reference_field
        if self.idempotency_reference_url_kwarg is not None or name is None:
            return super().get_idempotency_reference(request)
        return reference_for(name, request.data, serializer_field(self, name))

    def normalise_idempotency_reference(self, name: str, value: Any) -> Any:
        """A URL kwarg's value as the view's lookup reads it (``01`` is row 1)."""
        return lookup_value(self, name, value)

    def http_request(self, request: Request) -> HttpRequest:
        return request._request

    def configure_idempotency(self, options: Mapping[str, Any]) -> None:
        """Give this request's view instance a handler's ``@idempotent`` options."""
        configure(self, options)

    def _wrap_own_generic_handler(self, request: Request) -> None:
        """A generic view's own ``post()`` (``put()`` ...) around DRF's reaches the protected
        ``create()`` (``update()`` ...) only inside: the whole handler runs once instead, under
        that action's options, so what it does before ``super().post()`` runs once too."""
        method = (request.method or "").lower()
        handler = getattr(self, method, None)
        function = getattr(handler, "__func__", None)
        if function is None or function.__module__ == "rest_framework.generics":
            return  # DRF's own handler only delegates to the protected action
        if idempotent_options(handler) is not None:
            return
        options = handler_options(self, handler)
        if options is not None:
            # DRF looks the handler up after initial(); the instance is this request's own.
            setattr(self, method, types.MethodType(idempotent(**options)(function), self))

    def _refuse_unwrapped_key(self, request: Request) -> None:
        """A key the layer would not honour is refused: silently ignoring it lets a client
        believe its retries are safe."""
        handler = getattr(self, (request.method or "").lower(), None)
        if handler is None or handler == getattr(self, "http_method_not_allowed", None):
            return  # DRF answers 405 itself
        if handler_options(self, handler) is None:
            raise KeyNotSupported(
                f"{request.method} on this endpoint does not process requests "
                f"idempotently; send it without the {app_settings.HEADER} header."
            )


class _DefinedBehind:
    """A mixin's method that exists on a view only when a class after the mixin in the view's
    bases defines it too: ``IdempotentCreateMixin`` on a ``ReadOnlyModelViewSet`` adds no
    ``create()``, so the router offers no POST and DRF answers 405, as without the mixin."""

    def __init__(self, function: Handler) -> None:
        self.function = function
        functools.update_wrapper(self, function)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.mixin = owner
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        cls = owner if owner is not None else type(instance)
        mro = cls.__mro__
        if not any(self.name in vars(base) for base in mro[mro.index(self.mixin) + 1 :]):
            raise AttributeError(
                f"{cls.__qualname__} has no {self.name}() after {self.mixin.__qualname__}"
            )
        return self.function.__get__(instance, owner)


def _defined_behind(function: _H) -> _H:
    # Typed as the function itself, so that a view's own ``create()`` still overrides it.
    return _DefinedBehind(function)  # type: ignore[return-value]


class IdempotentCreateMixin(IdempotentAPIViewMixin):
    """Make ``create()`` (POST) of a DRF view exactly-once per ``Idempotency-Key``.

    List it before the class that defines ``create()`` (``CreateModelMixin``, or your own):
    a ``create()`` defined on the view itself hides this one (system check
    ``django_idempotency.E007``); decorate such a ``create()`` with ``@idempotent()``.
    """

    @_defined_behind
    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return super().create(request, *args, **kwargs)  # type: ignore[misc,no-any-return]
