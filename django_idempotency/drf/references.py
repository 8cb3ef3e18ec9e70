"""Business references for DRF views: the identity of what the serializer's field resolves to.

``/api/orders/29/``, ``http://host/api/orders/029/?x=1``, ``29``, ``"29"`` and ``29.0`` all
name order 29 to DRF, so they must name one reference; ``"542486"`` and ``"0542486"`` are two
slugs of two orders, so they must name two. The only judge that cannot disagree with the
serializer is the serializer's own field, so the value is run through it: a related field
(primary key, hyperlinked, slug, custom) yields the related object's primary key, any other
field its internal value. Resolving a related field costs the query the serializer runs anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, RelatedField

from ..core.policy import same_integer
from ..core.references import MAX_LOOKUP_INT, storable, text, unsafe


def reference_for(name: str, data: Any, field: Field | None) -> str | None:  # type: ignore[type-arg]
    """``"<name>:<identity>"`` for the request's ``data``; ``None`` when the value is absent.

    Raises DRF's ``ValidationError`` (a 400 naming the field, before any statement runs) for a
    value the field refuses or that must not reach the database (NUL, lone surrogates,
    non-finite numbers, integers no database binds): the request would fail validation anyway,
    so nothing is looked up, nothing stored, and the key stays free.
    """
    if not isinstance(data, Mapping):
        return None
    value = field.get_value(data) if field is not None else data.get(name, empty)
    if value is empty or value is None or value == "":
        return None
    lookup = isinstance(field, RelatedField | ManyRelatedField)
    problem = unsafe(value, lookup=lookup)
    if problem is not None:
        raise ValidationError({name: [problem]}, code="invalid")
    return storable(f"{name}:{identity(name, value, field)}")


def identity(name: str, value: Any, field: Field | None) -> str:  # type: ignore[type-arg]
    """What ``value`` names to ``field``: a related object's pk, else the internal value."""
    if field is None or field.read_only:
        # No serializer to ask, or one that ignores the input (and would answer SkipField or
        # its default for every request): the value as sent, which the view reads itself.
        return text(value)
    primary_key = _primary_key(field, value)
    if primary_key is not None:
        return primary_key
    try:
        internal = field.run_validation(value)
    except ValidationError as exc:
        raise ValidationError({name: exc.detail}) from exc
    except (OverflowError, TypeError, ValueError) as exc:
        # Lookups that DRF does not guard (an integer too wide for SQLite's binding).
        raise ValidationError({name: ["Invalid value."]}, code="invalid") from exc
    return text(internal)


def _primary_key(field: Field, value: Any) -> str | None:  # type: ignore[type-arg]
    """A plain ``PrimaryKeyRelatedField`` names the key DRF would look up: no query needed.

    The model's own conversion is the one DRF's ``queryset.get(pk=...)`` applies, so ``7``,
    ``"07"`` and ``7.0`` agree. Anything it cannot convert takes the field's slow path (which
    queries and reports the field's own error); so does every other kind of field.
    """
    queryset = getattr(field, "queryset", None)
    if type(field) is not PrimaryKeyRelatedField or queryset is None or isinstance(value, bool):
        return None
    try:
        if field.pk_field is not None:
            value = field.pk_field.to_internal_value(value)
        key = queryset.model._meta.pk.to_python(value)
    except (DjangoValidationError, ValidationError, ArithmeticError, TypeError, ValueError):
        return None
    if isinstance(key, int) and abs(key) > MAX_LOOKUP_INT:
        return None
    return str(key)


def serializer_field(view: Any, name: str) -> Field | None:  # type: ignore[type-arg]
    """The field of the view's serializer that judges the reference ``name``, on every kind of
    view: ``get_serializer()``, else the ``serializer_class`` of an ``APIView`` (the one its
    handler validates with, and the one schema generators read); ``None`` without one."""
    try:
        if hasattr(view, "get_serializer"):
            serializer = view.get_serializer()
        else:
            get_class = getattr(view, "get_serializer_class", None)
            serializer_class = get_class() if get_class else getattr(view, "serializer_class", None)
            if serializer_class is None:
                return None
            context = {"request": view.request, "format": getattr(view, "format_kwarg", None)}
            serializer = serializer_class(context={**context, "view": view})
    except AssertionError:  # DRF's way of saying the view has no serializer_class
        return None
    return None if serializer is None else serializer.fields.get(name)


def lookup_value(view: Any, url_kwarg: str, value: Any) -> Any:
    """``01`` and ``1`` in the URL name one row to the view's lookup, so one reference.

    The lookup field's own conversion is the one its query applies: an integer or UUID
    field (a public order number) canonicalises as the primary key does, a slug keeps it.
    """
    model = getattr(getattr(view, "queryset", None), "model", None)
    lookup_field = getattr(view, "lookup_field", None)
    lookup_kwarg = getattr(view, "lookup_url_kwarg", None) or lookup_field
    if model is None or url_kwarg != lookup_kwarg:
        return same_integer(value)  # a nested route's ``payment_pk``: any integer spelling
    try:
        field = model._meta.pk if lookup_field == "pk" else model._meta.get_field(lookup_field)
    except FieldDoesNotExist:
        return value  # a lookup across relations (``order__number``): as sent
    to_python = getattr(field, "to_python", None)
    if to_python is None:
        return value  # a reverse relation: nothing to convert with
    try:
        return to_python(value)
    except (DjangoValidationError, TypeError, ValueError):
        return value  # the lookup answers 404, which releases the key
