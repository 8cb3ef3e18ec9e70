"""Django REST framework door: ``@idempotent`` for any handler (``decorators``), the view
mixins (``mixins``), and a problem+json exception handler (``handlers``)."""

from __future__ import annotations

from typing import Any

from ..core.policy import OPTIONS, warn_deprecated
from .decorators import handler_options, idempotent, idempotent_options
from .handlers import IdempotencyRefused, problem_exception_handler
from .mixins import IdempotentAPIViewMixin, IdempotentCreateMixin

__all__ = [
    "OPTIONS",
    "IdempotencyRefused",
    "IdempotentAPIViewMixin",
    "IdempotentCreateMixin",
    "handler_options",
    "idempotent",
    "idempotent_options",
    "problem_exception_handler",
]


def __getattr__(name: str) -> Any:
    if name == "IdempotentViewMixin":  # its name until the plain-Django door's took it
        warn_deprecated("django_idempotency.drf.IdempotentViewMixin", "IdempotentAPIViewMixin")
        return IdempotentAPIViewMixin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
