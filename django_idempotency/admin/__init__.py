"""Read-only admin for records, the event log and the outbox, with a purge that uses the one
routine."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.db.models.expressions import Combinable
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import IdempotencyEvent, IdempotencyRecord, OutboxMessage
from ..models.purge import PurgeResult
from .paging import EstimatedCountPaginator, IndexedChangeList, count_rows

#: Characters of a stored body shown on the detail page; the rest is summarised.
BODY_PREVIEW_LIMIT = 8 * 1024
#: Events shown inline on a record; the full, filterable list is one link away.
INLINE_EVENT_LIMIT = 50

_STATUS_COLOURS = {"2": "#1a7f37", "3": "#0969da", "4": "#bc4c00", "5": "#cf222e"}
_KIND_COLOURS = {
    IdempotencyEvent.Kind.REPLAYED: "#0969da",
    IdempotencyEvent.Kind.MISMATCH: "#cf222e",
    IdempotencyEvent.Kind.IN_FLIGHT: "#9a6700",
    IdempotencyEvent.Kind.REFERENCE: "#8250df",
}


def _badge(text: Any, colour: str) -> SafeString:
    return format_html('<span class="idem-badge" style="background:{}">{}</span>', colour, text)


def _kind_badge(kind: str) -> SafeString:
    return _badge(IdempotencyEvent.Kind(kind).label, _KIND_COLOURS[IdempotencyEvent.Kind(kind)])


# -- list filters -------------------------------------------------------------------------


class _ConditionFilter(admin.SimpleListFilter):
    """A filter whose choices each map to one condition on the queryset."""

    def condition(self, value: str) -> Q | Combinable | None:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        condition = self.condition(value) if value else None
        return queryset if condition is None else cast("QuerySet[Any]", queryset.filter(condition))


class ConflictFilter(_ConditionFilter):
    """Records that refused a request (payload mismatch or reference conflict).

    Served by a partial index on the refusal counter: the per-kind view, including the 409s
    that met a claim still in flight (never counted on a record), is the event log's kind filter.
    """

    title = _("refused a request")
    parameter_name = "conflicted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes"))]

    def condition(self, value: str) -> Q | Combinable | None:
        return Q(conflict_count__gt=0) if value == "yes" else None


class ExpiredFilter(_ConditionFilter):
    title = _("expired")
    parameter_name = "expired"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Expired (purgeable)")), ("no", _("Live"))]

    def condition(self, value: str) -> Q | Combinable | None:
        now = timezone.now()
        return {"yes": Q(expires_at__lte=now), "no": Q(expires_at__gt=now)}.get(value)


class StatusClassFilter(_ConditionFilter):
    """Stored error responses; a partial index holds exactly the records with status >= 400."""

    title = _("response status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("4xx", _("4xx client error")), ("5xx", _("5xx server error"))]

    def condition(self, value: str) -> Q | Combinable | None:
        if value in {"4xx", "5xx"}:
            low = int(value[0]) * 100
            return Q(response_status__gte=low, response_status__lt=low + 100)
        return None


class KindFilter(_ConditionFilter):
    """The event kind; a value that is not one (``1%00`` would reach PostgreSQL) lists nothing."""

    title = _("kind")
    # Django's name for a field filter on ``kind``: links made for it keep working.
    parameter_name = "kind__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(IdempotencyEvent.Kind.choices)

    def condition(self, value: str) -> Q | Combinable | None:
        return Q(kind=value) if value in IdempotencyEvent.Kind.values else Q(pk__in=[])


#: A record id as typed in a URL: ASCII digits only ("²".isdigit() is true, int("²") fails)
#: and short enough for a bigint.
_RECORD_ID = re.compile(r"[0-9]{1,18}")


class AboutRecordFilter(_ConditionFilter):
    """The events of one record (in-flight refusals included); shown only while in use."""

    title = _("record")
    parameter_name = "about"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        value = self.value()
        if not value or not _RECORD_ID.fullmatch(value):
            return []
        record = _record(value)
        # A purged record's id still names its leftover events until they are swept.
        label = str(record) if record is not None else _("#%(id)s (purged)") % {"id": value}
        return [(value, label)]

    def condition(self, value: str) -> Q | Combinable | None:
        if not _RECORD_ID.fullmatch(value):
            return Q(pk__in=[])  # no such record: an empty list, not every event
        record = _record(value)
        if record is None:
            return Q(record_id=int(value))
        return Q(pk__in=IdempotencyEvent.objects.about(record).values("pk"))


def _record(pk: str) -> IdempotencyRecord | None:
    record = IdempotencyRecord.objects.filter(pk=pk).defer("response_body").first()
    return cast("IdempotencyRecord | None", record)


# -- inspection only ----------------------------------------------------------------------


class _InspectionOnly:
    """No adding, changing or deleting: rows are written by the engine and removed by the purge."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# -- records ------------------------------------------------------------------------------


class EventInlineFormSet(BaseInlineFormSet):  # type: ignore[type-arg]
    """The record's latest events, including in-flight refusals, which carry no link."""

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_about"):
            events = IdempotencyEvent.objects.using(self.instance._state.db)
            about = events.about(self.instance).order_by("-pk")
            self._about = cast("QuerySet[Any]", about[:INLINE_EVENT_LIMIT])
        return self._about


class EventInline(_InspectionOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = IdempotencyEvent
    fk_name = "record"
    formset = EventInlineFormSet
    fields = ("time", "kind_badge", "key", "reference", "fingerprint")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = _("event")
    verbose_name_plural = _("events (latest %(limit)d)") % {"limit": INLINE_EVENT_LIMIT}

    @admin.display(description=_("time"))
    def time(self, event: IdempotencyEvent) -> str:
        return _when(event.at)

    @admin.display(description=_("kind"))
    def kind_badge(self, event: IdempotencyEvent) -> SafeString:
        return _kind_badge(event.kind)


class _BigTableAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """What keeps a changelist fast at millions of rows (docs/operating.md, "The admin").

    No full ``COUNT(*)`` (an estimate past a thousand rows), no date hierarchy (its MIN/MAX
    and DISTINCT date scans read the whole table), no facet counts, only indexed sorts, and
    searches that are exact matches on indexed columns.
    """

    ordering = ("-pk",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    if hasattr(admin, "ShowFacets"):  # Django >= 5.0: ?_facets=1 counts every filter choice
        show_facets = admin.ShowFacets.NEVER
    #: Filter parameter -> the ordering an index serves while that filter is in use.
    default_orderings: dict[str, tuple[str, ...]] = {}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[IndexedChangeList]:
        return IndexedChangeList

    def lookup_allowed(self, lookup: str, value: Any, request: Any = None) -> bool:
        # Only the filters offered. Django otherwise accepts any lookup on a local field from
        # the URL (?replay_count__gt=0, ?response_body__contains=x): a full scan at will.
        allowed = set()
        for spec in self.list_filter:
            if isinstance(spec, str):
                allowed |= {f"{spec}__exact", f"{spec}__isnull"}
            else:
                allowed.add(getattr(spec, "parameter_name", ""))
        return lookup in allowed

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exact matches only (an index lookup, where "contains" reads every row); a term no
        # column can hold matches nothing rather than reaching the database.
        if len(term) > 255 or "\x00" in term:
            return queryset.none(), False
        condition = Q()
        for field in self.get_search_fields(request):
            condition |= Q(**{field.lstrip("=^@"): term})
        return queryset.filter(condition), False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(_InspectionOnly, _BigTableAdmin):
    list_display = (
        "key",
        "scope",
        "reference_display",
        "state",
        "status_display",
        "created_display",
        "expires_display",
        "replay_count",
        "conflict_count",
        "last_seen_display",
    )
    # Every filter, search and sort here is served by an index (see _BigTableAdmin). No
    # "state" filter: an in-flight record is never visible outside its own transaction.
    list_filter = (ExpiredFilter, ConflictFilter, StatusClassFilter)
    sortable_by = ("created_display", "expires_display")
    default_orderings = {ExpiredFilter.parameter_name: ("-expires_at", "-pk")}
    search_fields = ("=key", "=requested_reference")
    search_help_text = _("An exact key or business reference.")
    list_per_page = 50
    actions = ("purge_selected",)
    inlines = (EventInline,)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "key",
                    "scope",
                    "state",
                    "fingerprint",
                    ("request_method", "request_path"),
                    "requested_reference",
                    "reference",
                )
            },
        ),
        (
            _("Stored response"),
            {"fields": ("status_display", "headers_display", "body_display")},
        ),
        (
            _("Lifetime"),
            {
                "fields": (
                    "created_display",
                    "completed_display",
                    "expires_display",
                    "last_seen_display",
                ),
                "description": _(
                    "Claimed when the first request arrived, completed when its response was "
                    "stored, replayed until it expires; last seen is the latest request after "
                    "the first."
                ),
            },
        ),
        (
            _("After the first request"),
            {"fields": ("replay_count", "conflict_count", "events_link")},
        ),
    )
    readonly_fields = (
        "key",
        "scope",
        "state",
        "fingerprint",
        "request_method",
        "request_path",
        "requested_reference",
        "reference",
        "status_display",
        "headers_display",
        "body_display",
        "created_display",
        "completed_display",
        "expires_display",
        "last_seen_display",
        "replay_count",
        "conflict_count",
        "events_link",
    )

    def has_purge_permission(self, request: HttpRequest) -> bool:
        """Purging needs the model's delete permission, though single deletes stay off."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.delete_{opts.model_name}")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Bodies can be a MiB each: the list never shows them, the detail page loads its one.
        return cast("QuerySet[Any]", super().get_queryset(request).defer("response_body"))

    # -- columns and fields -------------------------------------------------------------

    @admin.display(description=_("reference"), ordering="requested_reference")
    def reference_display(self, record: IdempotencyRecord) -> str:
        return record.requested_reference or "-"

    @admin.display(description=_("response status"), ordering="response_status")
    def status_display(self, record: IdempotencyRecord) -> SafeString | str:
        if record.response_status is None:
            return "-"
        colour = _STATUS_COLOURS.get(str(record.response_status)[0], "#59636e")
        return _badge(record.response_status, colour)

    # Ids are handed out in claim order: sorting by id is sorting by creation, on an index.
    @admin.display(description=_("created"), ordering="pk")
    def created_display(self, record: IdempotencyRecord) -> str:
        return _when(record.created_at)

    @admin.display(description=_("completed"), ordering="completed_at")
    def completed_display(self, record: IdempotencyRecord) -> str:
        return _when(record.completed_at)

    @admin.display(description=_("last seen"), ordering="last_seen_at")
    def last_seen_display(self, record: IdempotencyRecord) -> str:
        return _when(record.last_seen_at)

    @admin.display(description=_("expires"), ordering="expires_at")
    def expires_display(self, record: IdempotencyRecord) -> SafeString:
        when = _when(record.expires_at)
        if record.is_expired:
            return format_html(
                '<span class="idem-expired" title="{}">{} <b>{}</b></span>',
                _("Replays stopped; the next purge removes this record."),
                when,
                _("expired"),
            )
        return format_html("<span>{}</span>", when)

    @admin.display(description=_("headers"))
    def headers_display(self, record: IdempotencyRecord) -> SafeString | str:
        if not record.response_headers:
            return "-"
        return format_html(
            '<pre class="idem-pre">{}</pre>',
            format_html_join("\n", "{}: {}", ((n, v) for n, v in record.response_headers)),
        )

    @admin.display(description=_("body"))
    def body_display(self, record: IdempotencyRecord) -> SafeString | str:
        body = bytes(record.response_body)
        if not body:
            return "-"
        text, kind = _readable_body(body, _content_type(record.response_headers))
        note = _("%(size)d bytes, %(kind)s") % {"size": len(body), "kind": kind}
        if len(text) > BODY_PREVIEW_LIMIT:
            note += ", " + str(
                _("first %(shown)d of %(total)d characters shown")
                % {"shown": BODY_PREVIEW_LIMIT, "total": len(text)}
            )
        shown = text[:BODY_PREVIEW_LIMIT]
        return format_html(
            '<pre class="idem-pre idem-body">{}</pre><div class="idem-note">{}</div>', shown, note
        )

    @admin.display(description=_("event log"))
    def events_link(self, record: IdempotencyRecord) -> SafeString:
        url = reverse("admin:django_idempotency_idempotencyevent_changelist")
        events = IdempotencyEvent.objects.using(record._state.db).about(record)
        count, estimated = count_rows(events)
        label = ngettext("%(count)d event", "%(count)d events", count) % {"count": count}
        if estimated:
            label = _("about %(label)s") % {"label": label}
        return format_html('<a href="{}?about={}">{} &rarr;</a>', url, record.pk, label)

    # -- purge ------------------------------------------------------------------------

    @admin.action(
        description=_("Purge the selected records that have expired"), permissions=["purge"]
    )
    def purge_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        selected = queryset.count()
        result = queryset.purge_expired()  # type: ignore[attr-defined]
        self._report(request, result)
        kept = selected - result.deleted
        if kept:
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected record has not expired (or is in use) and was kept.",
                    "%(count)d selected records have not expired (or are in use) and were kept.",
                    kept,
                )
                % {"count": kept},
                messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        purge = path(
            "purge/",
            self.admin_site.admin_view(self.purge_view),
            name=f"{opts.app_label}_{opts.model_name}_purge",
        )
        return [purge, *super().get_urls()]

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        """Purge every expired record: a dry run to confirm, then the real thing on POST."""
        if not self.has_purge_permission(request):
            raise PermissionDenied
        records = self.get_queryset(request)
        changelist = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        if request.method == "POST":
            self._report(request, records.purge_expired())  # type: ignore[attr-defined]
            return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Purge expired idempotency records"),
            "opts": self.opts,
            **_purge_preview(records),
            "changelist_url": changelist,
        }
        return TemplateResponse(
            request, "admin/django_idempotency/idempotencyrecord/purge.html", context
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "has_purge_permission": self.has_purge_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def _report(self, request: HttpRequest, result: PurgeResult) -> None:
        self.message_user(
            request,
            ngettext(
                "Purged %(deleted)d expired records and %(events)d events "
                "in %(batches)d batch (%(seconds).2f s).",
                "Purged %(deleted)d expired records and %(events)d events "
                "in %(batches)d batches (%(seconds).2f s).",
                result.batches,
            )
            % {
                "deleted": result.deleted,
                "events": result.events_deleted,
                "batches": result.batches,
                "seconds": result.seconds,
            },
            messages.SUCCESS,
        )


# -- events -------------------------------------------------------------------------------


@admin.register(IdempotencyEvent)
class IdempotencyEventAdmin(_InspectionOnly, _BigTableAdmin):
    list_display = (
        "at_display",
        "kind_badge",
        "key",
        "scope",
        "reference",
        "short_fingerprint",
        "record_link",
    )
    # Only filters of our own: Django's field filters pass any value to the database.
    list_filter = (KindFilter, AboutRecordFilter)
    sortable_by = ("at_display",)
    list_per_page = 100
    fields = (
        "at",
        "kind_badge",
        "scope",
        "key",
        "reference",
        "fingerprint",
        "record_link",
        "expires_at",
    )
    readonly_fields = fields

    @admin.display(description=_("time"), ordering="pk")
    def at_display(self, event: IdempotencyEvent) -> str:
        return _when(event.at)

    @admin.display(description=_("kind"), ordering="kind")
    def kind_badge(self, event: IdempotencyEvent) -> SafeString:
        return _kind_badge(event.kind)

    @admin.display(description=_("fingerprint"), ordering="fingerprint")
    def short_fingerprint(self, event: IdempotencyEvent) -> SafeString:
        return format_html('<code title="{}">{}…</code>', event.fingerprint, event.fingerprint[:12])

    @admin.display(description=_("record"))
    def record_link(self, event: IdempotencyEvent) -> SafeString | str:
        # The id alone: no join, and a purged record simply shows as a number without a link.
        if event.record_id is None:
            return "-"
        url = reverse("admin:django_idempotency_idempotencyrecord_change", args=[event.record_id])
        return format_html('<a href="{}">#{}</a>', url, event.record_id)


# -- outbox -------------------------------------------------------------------------------


class OutboxStateFilter(_ConditionFilter):
    """Parked messages (a partial index), and those that failed but are still tried."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("parked", _("Parked (the relay gave up)")),
            ("failing", _("Failed, tried again by the relay")),
            ("waiting", _("Waiting to be sent")),
        ]

    def condition(self, value: str) -> Q | Combinable | None:
        # The outbox is nearly empty while the broker is up; only "parked" needs its index.
        return {
            "parked": Q(parked_at__isnull=False),
            "failing": Q(parked_at__isnull=True, attempts__gt=0),
            "waiting": Q(parked_at__isnull=True, attempts=0),
        }.get(value, Q(pk__in=[]))


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_InspectionOnly, _BigTableAdmin):
    """The task messages not yet sent: what waits, what fails, and why. Rows are written by
    ``send_on_commit`` and removed by the publish that the broker confirmed."""

    list_display = (
        "task_id",
        "name",
        "created_display",
        "state_badge",
        "attempts",
        "last_attempt_display",
        "short_error",
    )
    list_filter = (OutboxStateFilter,)
    sortable_by = ("created_display",)
    search_fields = ("=task_id", "=name")
    search_help_text = _("An exact task id or task name.")
    list_per_page = 100
    fields = (
        "task_id",
        "name",
        "state_badge",
        "args_display",
        "kwargs_display",
        "options_display",
        "created_display",
        "attempts",
        "last_attempt_display",
        "parked_display",
        "error_display",
    )
    readonly_fields = fields

    @admin.display(description=_("created"), ordering="pk")
    def created_display(self, message: OutboxMessage) -> str:
        return _when(message.created_at)

    @admin.display(description=_("last attempt"))
    def last_attempt_display(self, message: OutboxMessage) -> str:
        return _when(message.last_attempt_at)

    @admin.display(description=_("parked"))
    def parked_display(self, message: OutboxMessage) -> str:
        return _when(message.parked_at)

    @admin.display(description=_("state"))
    def state_badge(self, message: OutboxMessage) -> SafeString:
        if message.parked_at is not None:
            return _badge(_("parked"), "#cf222e")
        if message.attempts:
            return _badge(_("failing"), "#9a6700")
        return _badge(_("waiting"), "#59636e")

    @admin.display(description=_("last error"))
    def short_error(self, message: OutboxMessage) -> str:
        error = message.last_error
        return error if len(error) <= 80 else f"{error[:79]}…"

    @admin.display(description=_("last error"))
    def error_display(self, message: OutboxMessage) -> SafeString | str:
        if not message.last_error:
            return "-"
        return format_html('<pre class="idem-pre">{}</pre>', message.last_error)

    @admin.display(description=_("arguments"))
    def args_display(self, message: OutboxMessage) -> SafeString:
        return _json(message.args)

    @admin.display(description=_("keyword arguments"))
    def kwargs_display(self, message: OutboxMessage) -> SafeString:
        return _json(message.kwargs)

    @admin.display(description=_("options"))
    def options_display(self, message: OutboxMessage) -> SafeString:
        return _json(message.options)


def _json(value: Any) -> SafeString:
    return format_html(
        '<pre class="idem-pre">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False)
    )


def _purge_preview(records: QuerySet[Any]) -> dict[str, Any]:
    """What a purge would remove, counted exactly only while that is cheap (a dry run counts
    every expired row and its events, minutes on a big table)."""
    alias = records.db
    now = timezone.now()
    due = records.filter(expires_at__lte=now, state=IdempotencyRecord.State.COMPLETED)
    deleted, records_estimated = count_rows(due)
    events, events_estimated = count_rows(
        IdempotencyEvent.objects.using(alias).filter(expires_at__lte=now)
    )
    return {
        "preview": PurgeResult(database=alias, deleted=deleted, events_deleted=events),
        "estimated": records_estimated or events_estimated,
    }


def _when(moment: datetime | None) -> str:
    """Compact, sortable local time: operators compare these across columns at a glance."""
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def _content_type(headers: Iterable[Any]) -> str:
    for name, value in headers:
        if str(name).lower() == "content-type":
            return str(value)
    return ""


def _readable_body(body: bytes, content_type: str) -> tuple[str, str]:
    """The body as text for a human: pretty JSON, plain text, or a hex dump of binary."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # Three characters per byte; one more byte than fits, so the preview says it is cut.
        return body[: BODY_PREVIEW_LIMIT // 3 + 1].hex(" "), str(_("binary, shown as hex"))
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False), "JSON"
        except ValueError:
            pass
    return text, content_type.split(";")[0] or str(_("text"))
