"""The key store: one IdempotencyRecord per (scope, key) and its event log (the purge that
clears them is in ``purge.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import models, router
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..arguments import DEFAULT_PURGE_BATCH_SIZE
from .batches import delete_rows, update_rows
from .holds import holds_reference
from .partial_indexes import without_answered

# ``PurgeResult`` lived here before: importing it from this module still works.
from .purge import Progress, PurgeResult, purge_expired


class IdempotencyRecordQuerySet(models.QuerySet["IdempotencyRecord"]):
    def expired(self, now: datetime | None = None) -> IdempotencyRecordQuerySet:
        return self.filter(expires_at__lte=now or timezone.now())  # type: ignore[no-any-return]

    def holding_reference(self, at: Any) -> IdempotencyRecordQuerySet:
        """Records whose reference is still held at ``at`` (a datetime or ``Now()``)."""
        return self.filter(holds_reference(at))  # type: ignore[no-any-return]

    def clear_expired(
        self,
        *,
        scope: str,
        key: str,
        reference: str | None,
        at: Any,
        by_primary_key: bool = False,
    ) -> int:
        """Clear the expired records in the way of a claim: expired counts as absent.

        A record of (``scope``, ``key``) past its TTL at ``at`` gives its key back; one that
        still holds its reference keeps it, as a compact row stripped of its response (state
        ``held``), so the reference keeps refusing. A record of ``reference`` whose hold ran
        out is released with its row. Returns the rows deleted or stripped.

        ``by_primary_key`` (MySQL): the records are found by plain reads, which wait for
        nothing, and written by primary key alone (``batches.py``). A stale read is harmless:
        an expired record never comes back to life, and one whose hold has run out never holds
        its reference again.
        """
        State = IdempotencyRecord.State
        records = self.filter(scope=scope)
        expired_key = records.filter(key=key, state=State.COMPLETED, expires_at__lte=at)
        released = (
            records.none()
            if reference is None
            else records.filter(
                reference=reference, expires_at__lte=at, reference_expires_at__lte=at
            )
        )
        if by_primary_key:
            return self._clear_by_primary_key(expired_key, released, at)
        cleared = expired_key.holding_reference(at).update(
            state=State.HELD, response_headers=[], response_body=b""
        )
        cleared += expired_key.delete()[0]
        cleared += released.delete()[0]
        return int(cleared)

    def _clear_by_primary_key(
        self, expired_key: IdempotencyRecordQuerySet, released: IdempotencyRecordQuerySet, at: Any
    ) -> int:
        alias = self._db or router.db_for_write(self.model)  # type: ignore[attr-defined]
        holding = list(expired_key.holding_reference(at).values_list("pk", flat=True))
        gone = set(expired_key.values_list("pk", flat=True)) - set(holding)
        gone |= set(released.values_list("pk", flat=True))
        State = IdempotencyRecord.State
        stripped = update_rows(
            IdempotencyRecord,
            holding,
            alias,
            state=State.HELD,
            response_headers=[],
            response_body=b"",
        )
        return stripped + delete_rows(IdempotencyRecord, sorted(gone), alias)

    def purge_expired(
        self,
        *,
        batch_size: int = DEFAULT_PURGE_BATCH_SIZE,
        older_than: timedelta | None = None,
        scope: str | None = None,
        dry_run: bool = False,
        now: datetime | None = None,
        progress: Progress | None = None,
    ) -> PurgeResult:
        """Delete the expired records of this queryset, and their events, in short batches
        (``purge.purge_expired``: how, and what stays)."""
        return purge_expired(
            self,
            batch_size=batch_size,
            older_than=older_than,
            scope=scope,
            dry_run=dry_run,
            now=now,
            progress=progress,
        )


class IdempotencyEventQuerySet(models.QuerySet["IdempotencyEvent"]):
    def about(self, record: IdempotencyRecord) -> IdempotencyEventQuerySet:
        """The events of one record, in-flight refusals (which carry no link) included.

        An in-flight refusal waited for a claim that was not committed yet, so it has no link;
        it belongs to the record with its scope and key (or the reference it waited for),
        created before it.
        """
        waited_for = Q(key=record.key)
        if record.requested_reference is not None:
            waited_for |= Q(reference=record.requested_reference)
        in_flight = Q(
            record__isnull=True, kind="in_flight", scope=record.scope, at__gte=record.created_at
        )
        return self.filter(Q(record=record.pk) | (in_flight & waited_for))  # type: ignore[no-any-return]


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        # Only ever seen inside the claiming transaction: the claim, the view and the stored
        # response commit together, so other connections see a completed record or nothing.
        IN_FLIGHT = "in_flight", _("in flight")
        COMPLETED = "completed", _("completed")
        # Past its TTL and stripped of its response, kept only because it still holds its
        # business reference: the key is free again, the reference is not.
        HELD = "held", _("reference held (response purged)")

    scope = models.CharField(
        _("scope"),
        max_length=255,
        help_text=_("The principal and endpoint the key belongs to."),
    )
    key = models.CharField(_("key"), max_length=255, help_text=_("The client's Idempotency-Key."))
    fingerprint = models.CharField(
        _("fingerprint"),
        max_length=64,
        help_text=_("SHA-256 of the method, path and canonical body of the first request."),
    )
    # NULL, not "", means "holds nothing": the partial unique constraint skips NULLs.
    reference = models.CharField(  # noqa: DJ001
        _("held reference"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_(
            "The business reference this record holds: set while the request runs and kept "
            "only when it succeeded (2xx), so no other key can repeat the operation."
        ),
    )
    requested_reference = models.CharField(  # noqa: DJ001
        _("reference"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("The business reference the request declared, whatever its outcome."),
    )
    state = models.CharField(
        _("state"),
        max_length=16,
        choices=State.choices,
        default=State.IN_FLIGHT,
        help_text=_("Whether the response has been stored."),
    )
    request_method = models.CharField(
        _("method"), max_length=16, help_text=_("HTTP method of the first request.")
    )
    request_path = models.TextField(
        _("path"), help_text=_("Path and query string of the first request.")
    )
    response_status = models.PositiveSmallIntegerField(
        _("response status"),
        null=True,
        blank=True,
        help_text=_("HTTP status of the stored response."),
    )
    response_headers = models.JSONField(
        _("response headers"),
        default=list,
        blank=True,
        help_text=_("The replayable headers of the stored response, as [name, value] pairs."),
    )
    response_body = models.BinaryField(
        _("response body"),
        default=b"",
        blank=True,
        help_text=_("The stored response body, replayed byte for byte."),
    )
    created_at = models.DateTimeField(
        _("created"), default=timezone.now, help_text=_("When the key was first claimed.")
    )
    completed_at = models.DateTimeField(
        _("completed"),
        null=True,
        blank=True,
        help_text=_("When the response was stored."),
    )
    expires_at = models.DateTimeField(
        _("expires"), help_text=_("After this the key counts as unused and may be purged.")
    )
    reference_expires_at = models.DateTimeField(
        _("reference held until"),
        null=True,
        blank=True,
        help_text=_(
            "When the held reference is released; empty: for as long as this row exists "
            "(IDEMPOTENCY_REFERENCE_TTL)."
        ),
    )
    last_seen_at = models.DateTimeField(
        _("last seen"),
        null=True,
        blank=True,
        help_text=_("When a request last used this key after the first one."),
    )
    replay_count = models.PositiveIntegerField(
        _("replays"), default=0, help_text=_("How often the stored response was replayed.")
    )
    conflict_count = models.PositiveIntegerField(
        _("conflicts"),
        default=0,
        help_text=_("How often a request was refused because of this record."),
    )

    objects = IdempotencyRecordQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            # A held row has given its key back: only the reference still counts.
            models.UniqueConstraint(
                fields=["scope", "key"],
                condition=~Q(state="held"),
                name="idempotency_scope_key_uniq",
            ),
            models.UniqueConstraint(
                fields=["scope", "reference"],
                condition=Q(reference__isnull=False),
                name="idempotency_scope_reference_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="idempotency_expires_idx"),
            # The admin's searches and filters (docs/operating.md, "The admin"). The partial
            # ones hold only the rare rows they serve, so the hot path seldom writes them.
            models.Index(fields=["key"], name="idempotency_key_idx"),
            models.Index(
                fields=["requested_reference"],
                condition=Q(requested_reference__isnull=False),
                name="idempotency_req_reference_idx",
            ),
            models.Index(
                fields=["id"], condition=Q(conflict_count__gt=0), name="idempotency_refused_idx"
            ),
            models.Index(
                fields=["id"], condition=Q(response_status__gte=400), name="idempotency_error_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope})"

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        # models.W036/W037 on MySQL: handled by migration 0008 (partial_indexes.py).
        return without_answered(super().check(**kwargs))

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()


class IdempotencyEvent(models.Model):
    """One thing that happened to a key after its first request: a replay or a refusal.

    Written with a single INSERT by the lookup that met the record
    (``store.find_count_and_log``; on PostgreSQL inside that lookup's own statement), or by
    ``events.record_event`` for an in-flight refusal. The link to the record is a plain
    column, not a database foreign key: the insert takes no lock on the record row and cannot
    fail because a purge removed the record a moment earlier, and the purge removes a batch of
    records and their events with one set-based DELETE each, with no per-row constraint checks
    or cascades. An event whose record is gone is swept by its own ``expires_at``.
    """

    class Kind(models.TextChoices):
        REPLAYED = "replayed", _("replayed")
        MISMATCH = "mismatch", _("payload mismatch")
        IN_FLIGHT = "in_flight", _("in flight (409)")
        REFERENCE = "reference", _("reference conflict")

    at = models.DateTimeField(
        _("time"), default=timezone.now, help_text=_("When the request arrived.")
    )
    kind = models.CharField(
        _("kind"),
        max_length=16,
        choices=Kind.choices,
        help_text=_("Replayed, or why the request was refused."),
    )
    scope = models.CharField(
        _("scope"), max_length=255, help_text=_("The principal and endpoint of the request.")
    )
    key = models.CharField(
        _("key"), max_length=255, help_text=_("The Idempotency-Key the request carried.")
    )
    reference = models.CharField(  # noqa: DJ001  (NULL: none declared, as on the record)
        _("reference"),
        max_length=255,
        null=True,
        blank=True,
        help_text=_("The business reference the request declared, if any."),
    )
    fingerprint = models.CharField(
        _("fingerprint"),
        max_length=64,
        help_text=_("SHA-256 of the method, path and canonical body of this request."),
    )
    record = models.ForeignKey(
        IdempotencyRecord,
        verbose_name=_("record"),
        null=True,
        blank=True,
        # No database constraint and no cascade: see the class docstring.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="events",
        help_text=_(
            "The stored record the request met; empty for an in-flight refusal, whose record "
            "was not committed yet."
        ),
    )
    expires_at = models.DateTimeField(
        _("expires"),
        help_text=_("Kept until then: the expiry of the record the request met."),
    )

    objects = IdempotencyEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("idempotency event")
        verbose_name_plural = _("idempotency events")
        indexes = [
            models.Index(fields=["expires_at"], name="idempotency_event_expires_idx"),
            # The admin: the kind filter in id order, and the in-flight refusals of a record
            # (no link; found by scope and key).
            models.Index(fields=["kind", "id"], name="idempotency_event_kind_idx"),
            models.Index(
                fields=["scope", "key"],
                condition=Q(record__isnull=True),
                name="idempotency_event_unlinked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.key} ({self.scope})"

    @classmethod
    def check(cls, **kwargs: Any) -> list[Any]:
        # models.W036/W037 on MySQL: handled by migration 0008 (partial_indexes.py).
        return without_answered(super().check(**kwargs))
