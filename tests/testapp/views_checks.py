"""Views the system checks judge (``tests/urls_view_checks.py`` routes them): two
misconfigured, the rest shapes that must pass."""

from __future__ import annotations

from typing import Any

from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_idempotency.drf import IdempotentAPIViewMixin, IdempotentCreateMixin, idempotent

from .models import Execution


class HiddenCreateViewSet(IdempotentCreateMixin, viewsets.GenericViewSet[Any]):
    """E007: its own ``create()`` hides the mixin's."""

    queryset = Execution.objects.all()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(status=201)


class DecoratedCreateViewSet(IdempotentCreateMixin, viewsets.GenericViewSet[Any]):
    queryset = Execution.objects.all()

    @idempotent()
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(status=201)


class OrderedCreateViewSet(
    IdempotentCreateMixin, mixins.CreateModelMixin, viewsets.GenericViewSet[Any]
):
    queryset = Execution.objects.all()


class WithoutMixinView(APIView):
    """E030: ``@idempotent`` without ``IdempotentAPIViewMixin``: every request a 500."""

    @idempotent()
    def post(self, request: Request) -> Response:
        return Response(status=201)


class MixinInSubclassView(IdempotentAPIViewMixin, WithoutMixinView):
    """The decorated handler lives on a base that is never routed: fine."""


class UndecoratedOverrideView(WithoutMixinView):
    """Overrides the decorated handler with a plain one: nothing of the layer is left."""

    def post(self, request: Request) -> Response:
        return Response(status=201)


class MixinAfterViewClassView(APIView, IdempotentAPIViewMixin):
    """E030: the mixin listed after DRF's view class; its ``initial()`` and
    ``handle_exception()`` never run (a key on an undecorated handler is silently ignored)."""

    @idempotent()
    def post(self, request: Request) -> Response:
        return Response(status=201)

    def put(self, request: Request) -> Response:
        return Response(status=200)
