"""System checks of the DRF views the URLconf routes: keyed requests that would not be
exactly-once (E007) or would fail with a 500 (E030).

The checks judge the view classes found by walking the URLconf, which imports every views
module as serving a request would. A registry filled as classes are defined would depend on
what happens to be imported when the checks run: ``manage.py check`` imports no views, so it
would see nothing while ``migrate`` (which loads the URLconf first) fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags
from django.urls import URLPattern, URLResolver, get_resolver


def routed_view_classes(patterns: Iterable[Any] | None = None) -> list[type]:
    """Every view class the URLconf routes to (each once, in URLconf order)."""
    if patterns is None:
        if not getattr(settings, "ROOT_URLCONF", None):
            return []  # a worker or a script without URLs: nothing is routed
        patterns = get_resolver().url_patterns
    classes: dict[type, None] = {}
    for callback in _callbacks(patterns):
        view_class = _view_class(callback)
        if view_class is not None:
            classes.setdefault(view_class)
    return list(classes)


def _callbacks(patterns: Iterable[Any]) -> Iterator[Any]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _callbacks(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            yield pattern.callback


def _view_class(callback: Any) -> type | None:
    """The class behind ``as_view()`` (DRF's ``cls``, Django's ``view_class``), also under
    decorators that keep ``__wrapped__`` (``login_required``, ``csrf_exempt``...)."""
    seen = 0
    while callback is not None and seen < 32:
        found = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if isinstance(found, type):
            return found
        callback = getattr(callback, "__wrapped__", None)
        seen += 1
    return None


def check_hidden_creates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A ``create()`` on a view that hides ``IdempotentCreateMixin``'s runs unprotected, or
    turns errors into answers outside the stored transaction (a 402 released, paid twice)."""
    try:
        from ..drf import IdempotentCreateMixin, idempotent_options
    except ImportError:  # DRF is not installed: no DRF views to check
        return []
    return [
        Error(
            f"{view.__module__}.{view.__qualname__} defines create() in front of "
            "IdempotentCreateMixin's, so keyed requests are not (or only partly) exactly-once.",
            hint="Decorate that create() with @django_idempotency.drf.idempotent(), or move it "
            "to a class listed after IdempotentCreateMixin in the bases.",
            obj=view,
            id="django_idempotency.E007",
        )
        for view in routed_view_classes()
        if issubclass(view, IdempotentCreateMixin)
        # No create() at all (a read-only viewset): nothing runs unprotected.
        and (create := getattr(view, "create", None)) is not None
        and idempotent_options(create) is None
    ]


def check_idempotent_without_mixin(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``@idempotent`` handlers need the mixin's hooks: without it, every request to them,
    keyed or not, is a 500 (``ImproperlyConfigured``)."""
    try:
        from ..drf import IdempotentAPIViewMixin
    except ImportError:
        return []
    messages: list[CheckMessage] = []
    for view in routed_view_classes():
        if issubclass(view, IdempotentAPIViewMixin):
            if _mixin_after_view_class(view, IdempotentAPIViewMixin):
                messages.append(
                    Error(
                        f"{view.__module__}.{view.__qualname__} lists IdempotentAPIViewMixin after "
                        "DRF's view class: its initial() and handle_exception() never run, so "
                        "a key on an undecorated unsafe handler is silently ignored.",
                        hint="Move IdempotentAPIViewMixin (or IdempotentCreateMixin) before the "
                        "DRF view class in the view's bases.",
                        obj=view,
                        id="django_idempotency.E030",
                    )
                )
            continue
        handlers = _idempotent_handlers(view)
        if handlers:
            messages.append(
                Error(
                    f"{view.__module__}.{view.__qualname__} has @idempotent handlers "
                    f"({', '.join(handlers)}) but not IdempotentAPIViewMixin in its bases: every "
                    "request to them fails with a 500.",
                    hint="Add django_idempotency.drf.IdempotentAPIViewMixin to the view's bases, "
                    "before the DRF view class.",
                    obj=view,
                    id="django_idempotency.E030",
                )
            )
    return messages


def _mixin_after_view_class(view: type, mixin: type) -> bool:
    """DRF's ``APIView`` comes before ``mixin`` in the view's MRO: ``APIView.initial()`` does
    not call ``super()``, so the mixin's hooks are skipped."""
    from rest_framework.views import APIView

    mro = view.__mro__
    return APIView in mro and mro.index(APIView) < mro.index(mixin)


def _idempotent_handlers(view: type) -> list[str]:
    """Names of the view's methods decorated with ``@idempotent``, read without calling
    descriptors (a property on a view must not run at start-up)."""
    from ..drf import idempotent_options

    names: dict[str, None] = {}
    for klass in reversed(view.__mro__):
        for name, member in vars(klass).items():
            if idempotent_options(member) is not None:
                names.setdefault(name)
            else:
                names.pop(name, None)  # overridden by an undecorated method
    return sorted(names)


#: The tags to register both checks with: they judge what the URLconf routes.
TAGS = (Tags.compatibility, Tags.urls)
