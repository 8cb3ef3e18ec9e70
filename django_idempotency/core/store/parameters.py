"""The parameters the dialects' shared statements bind: one place for what each names, so the
three dialects differ only in how they bind a moment or a length of time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..operation import Operation


def event_parameters(
    operation: Operation, *, kind: str, record_id: int | None, at: Any, expires_at: Any
) -> dict[str, Any]:
    """``LOG_EVENT``'s parameters; ``at`` and ``expires_at`` as the dialect binds a moment."""
    return {
        "at": at,
        "kind": kind,
        "scope": operation.scope,
        "key": operation.key,
        "reference": operation.reference,
        "fingerprint": operation.fingerprint,
        "record_id": record_id,
        "expires_at": expires_at,
    }


def outcome_parameters(
    *, record_id: int, status: int, headers: Any, body: Any, keep_reference: bool, **timing: Any
) -> dict[str, Any]:
    """``COMPLETE``'s parameters; ``timing``: the record's lifetimes as the dialect binds them
    (lengths of time for the database's clock, moments for SQLite's)."""
    return {
        "record_id": record_id,
        "status": status,
        "headers": headers,
        "body": body,
        "keep_reference": keep_reference,
        **timing,
    }
