"""The key store (one IdempotencyRecord per (scope, key)), its event log and the outbox."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .deliveries import TaskDeliveryQuerySet
from .managers import IdempotencyEventQuerySet, IdempotencyRecordQuerySet
from .outbox import OutboxMessageQuerySet


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

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def status_class(self) -> str:
        """``"2xx"`` .. ``"5xx"`` for the stored status, ``""`` while none is stored."""
        if self.response_status is None:
            return ""
        return f"{self.response_status // 100}xx"


class IdempotencyEvent(models.Model):
    """One thing that happened to a key after its first request: a replay or a refusal.

    Written with a single INSERT by the lookup that met the record (``store.touch``; on
    PostgreSQL inside that lookup's own statement), or by ``events.record_event`` for an
    in-flight refusal. The link to the record is a plain column, not a database foreign key:
    the insert takes no lock on the record row and cannot fail because a purge removed the
    record a moment earlier, and the purge removes a batch of records and their events with one
    set-based DELETE each, with no per-row constraint checks or cascades. An event whose record
    is gone is swept by its own ``expires_at``.
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


class OutboxMessage(models.Model):
    """A task message written in the transaction of the operation that sends it.

    It commits with the operation's other rows, or not at all; once committed it is sent and
    deleted, right after the commit or, if that send never happens (a lost commit
    acknowledgement, a killed worker, an unreachable broker), by the relay
    (``celery/outbox.py``). A message may so be sent twice, never not at all: the
    receiving task deduplicates by ``task_id``.
    """

    task_id = models.CharField(
        _("task id"),
        max_length=255,
        help_text=_("The id the message is sent with; the receiving task deduplicates by it."),
    )
    name = models.CharField(_("task name"), max_length=255, help_text=_("The task to run."))
    args = models.JSONField(
        _("arguments"), default=list, blank=True, help_text=_("Positional arguments (JSON).")
    )
    kwargs = models.JSONField(
        _("keyword arguments"),
        default=dict,
        blank=True,
        help_text=_("Keyword arguments (JSON)."),
    )
    options = models.JSONField(
        _("options"),
        default=dict,
        blank=True,
        help_text=_("How the message is sent (queue, routing key, priority ...), as JSON."),
    )
    created_at = models.DateTimeField(
        _("created"),
        default=timezone.now,
        help_text=_(
            "When the message was written (the database's clock on PostgreSQL); the relay "
            "sends it once it is older than IDEMPOTENCY_OUTBOX_RELAY_AFTER."
        ),
    )
    attempts = models.PositiveIntegerField(
        _("failed attempts"),
        default=0,
        help_text=_(
            "Publishes of this message that failed for a reason of its own (an unreachable "
            "broker counts none); at the relay's limit the message is parked."
        ),
    )
    last_error = models.TextField(
        _("last error"), blank=True, default="", help_text=_("Why the latest publish failed.")
    )
    last_attempt_at = models.DateTimeField(
        _("last attempt"), null=True, blank=True, help_text=_("When the latest publish failed.")
    )
    parked_at = models.DateTimeField(
        _("parked"),
        null=True,
        blank=True,
        help_text=_(
            "When the relay gave up on this message: it is left alone until an operator "
            "fixes the cause and unparks it (OutboxMessage.objects.parked().unpark())."
        ),
    )

    objects = OutboxMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("outbox message")
        verbose_name_plural = _("outbox messages")
        # No index on created_at: the relay walks the primary key, in which the old messages
        # come first, and the table is nearly empty whenever the broker is up.
        constraints = [
            models.UniqueConstraint(fields=["task_id"], name="idempotency_outbox_task_id_uniq"),
        ]
        indexes = [
            # The parked messages (the admin's filter, the relay's report): few or none.
            models.Index(
                fields=["parked_at"],
                condition=Q(parked_at__isnull=False),
                name="idempotency_outbox_parked_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.task_id}]"


class TaskDelivery(models.Model):
    """How many deliveries of an idempotent task's message did not come back (``IdempotentTask``).

    Written before each run in a commit of its own and removed when the delivery ends in any
    way its worker survives, so what is left counts the deliveries that killed their worker.
    Past the task's limit the operation is stored as failed (see ``celery/tasks.py``).
    """

    scope = models.CharField(
        _("scope"), max_length=255, help_text=_("The task's scope (celery:<task name>).")
    )
    key = models.CharField(_("key"), max_length=255, help_text=_("The task's idempotency key."))
    deliveries = models.PositiveIntegerField(
        _("deliveries"),
        default=1,
        help_text=_("Deliveries in a row that started the task and never reported back."),
    )
    expires_at = models.DateTimeField(
        _("expires"),
        help_text=_("After this the count starts again; the record it counts for is gone too."),
    )

    objects = TaskDeliveryQuerySet.as_manager()

    class Meta:
        verbose_name = _("task delivery count")
        verbose_name_plural = _("task delivery counts")
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_task_delivery_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.scope}): {self.deliveries}"
