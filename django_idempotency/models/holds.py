"""When a record still holds its business reference: one predicate for the claim's clearing
and for the purge, which must agree on it (a reference released by one and not the other would
be refused for ever, or let through twice)."""

from __future__ import annotations

from typing import Any

from django.db.models import Q


def holds_reference(at: Any) -> Q:
    """Records whose reference is still held at ``at`` (a datetime or the database's clock)."""
    return Q(reference__isnull=False) & (
        Q(reference_expires_at__isnull=True) | Q(reference_expires_at__gt=at)
    )
