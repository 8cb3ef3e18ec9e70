"""The event log: one IdempotencyEvent row per replay or refusal.

Replays and refusals met by a lookup are logged by that lookup
(``store.find_count_and_log``; on PostgreSQL in the same statement); ``record_event`` writes
the rest, such as an in-flight refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from ..conf import app_settings
from .store import log_event

if TYPE_CHECKING:
    from ..models import IdempotencyRecord
    from .operation import Operation


def record_event(operation: Operation, kind: str, record: IdempotencyRecord | None) -> None:
    """One INSERT on the operation's database, unless ``IDEMPOTENCY_RECORD_EVENTS`` is off.

    The counters are not touched here: ``store.find_count_and_log()`` already moved them in
    the statement that found the record, so they stay right with the log switched off.
    """
    if not app_settings.RECORD_EVENTS:
        return
    now = timezone.now()
    log_event(
        operation,
        kind=str(kind),
        at=now,
        record_id=record.pk if record is not None else None,
        # An in-flight refusal does not know its record yet; the record it waited for
        # will expire a TTL after it completes, which is later than this.
        expires_at=record.expires_at if record is not None else now + operation.ttl,
    )
