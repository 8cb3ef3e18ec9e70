"""The event log: signal receivers that write one IdempotencyEvent row per replay or refusal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .conf import app_settings
from .models import IdempotencyEvent, IdempotencyRecord
from .signals import request_conflicted, response_replayed
from .store import insert_bookkeeping

if TYPE_CHECKING:
    from .engine import Operation


def connect() -> None:
    """Connect the receivers (from ``AppConfig.ready()``; the uids make it idempotent)."""
    response_replayed.connect(
        log_replay, sender=IdempotencyRecord, dispatch_uid="django_idempotency.events.replay"
    )
    request_conflicted.connect(
        log_conflict, sender=IdempotencyRecord, dispatch_uid="django_idempotency.events.conflict"
    )


def log_replay(
    sender: Any, *, operation: Operation, record: IdempotencyRecord, **kwargs: Any
) -> None:
    record_event(operation, str(IdempotencyEvent.Kind.REPLAYED), record)


def log_conflict(
    sender: Any,
    *,
    operation: Operation,
    record: IdempotencyRecord | None,
    kind: str,
    **kwargs: Any,
) -> None:
    record_event(operation, IdempotencyEvent.Kind(kind).value, record)


def record_event(operation: Operation, kind: str, record: IdempotencyRecord | None) -> None:
    """One INSERT on the operation's database, unless ``IDEMPOTENCY_RECORD_EVENTS`` is off.

    The counters are not touched here: ``store.touch()`` already moved them in the statement
    that found the record, so they stay right with the log switched off.
    """
    if not app_settings.RECORD_EVENTS:
        return
    now = timezone.now()
    insert_bookkeeping(
        operation.database,
        IdempotencyEvent,
        {
            "at": now,
            "kind": kind,
            "scope": operation.scope,
            "key": operation.key,
            "reference": operation.reference,
            "fingerprint": operation.fingerprint,
            "record_id": record.pk if record is not None else None,
            # An in-flight refusal does not know its record yet; the record it waited for
            # will expire a TTL after it completes, which is later than this.
            "expires_at": record.expires_at if record is not None else now + operation.ttl,
        },
    )
