"""Business references for DRF views: the identity of what the serializer's field resolves to.

``/api/orders/29/``, ``http://host/api/orders/029/?x=1``, ``29``, ``"29"`` and ``29.0`` all
name order 29 to DRF, so they must name one reference; ``"542486"`` and ``"0542486"`` are two
slugs of two orders, so they must name two. The only judge that cannot disagree with the
serializer is the serializer's own field, so the value is run through it: a related field
(primary key, hyperlinked, slug, custom) yields the related object's primary key, any other
field its internal value. Resolving a related field costs the query the serializer runs anyway.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from rest_framework.exceptions import ValidationError
from rest_framework.fields import Field, empty
from rest_framework.relations import ManyRelatedField, PrimaryKeyRelatedField, RelatedField

# The widest integer every supported database binds (SQLite raises OverflowError beyond it).
_MAX_LOOKUP_INT = 2**63 - 1
_MAX_LENGTH = 255
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


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
        return _text(value)
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
    return _text(internal)


def unsafe(value: Any, *, lookup: bool = False) -> str | None:
    """Why ``value`` must not reach a statement, or ``None``. Checks nested values too."""
    if isinstance(value, str):
        if "\x00" in value:
            return "Null characters are not allowed."
        for char in value:
            if "\ud800" <= char <= "\udfff":
                return f"Surrogate characters are not allowed: U+{ord(char):X}."
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "A valid number is required."
    if lookup and isinstance(value, int) and abs(value) > _MAX_LOOKUP_INT:
        return "Invalid value."
    if isinstance(value, Mapping):
        for item in (*value.keys(), *value.values()):
            problem = unsafe(item, lookup=lookup)
            if problem is not None:
                return problem
    elif isinstance(value, list | tuple):
        for item in value:
            problem = unsafe(item, lookup=lookup)
            if problem is not None:
                return problem
    return None


def storable(reference: str) -> str:
    """A reference any database column takes: long or unencodable ones become a digest, and
    so does one that reads like a digest, which would otherwise name the digested reference."""
    if (
        len(reference) <= _MAX_LENGTH
        and unsafe(reference) is None
        and not _DIGEST.fullmatch(reference)
    ):
        return reference
    data = reference.encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(data).hexdigest()


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
    if isinstance(key, int) and abs(key) > _MAX_LOOKUP_INT:
        return None
    return str(key)


def _text(value: Any) -> str:
    if isinstance(value, Model):
        return str(value.pk)
    if isinstance(value, list | tuple | set | frozenset):
        # Many related objects: one reference for the set, whatever order they were sent in.
        return ",".join(sorted(_text(item) for item in value))
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
