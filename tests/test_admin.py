"""Every admin page and filter, rendered by the test client as a superuser."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from django_idempotency.admin import BODY_PREVIEW_LIMIT
from django_idempotency.models import IdempotencyEvent, IdempotencyRecord, OutboxMessage
from tests.factories import IdempotencyRecordFactory, UserFactory
from tests.test_events import probe

pytestmark = [pytest.mark.drf, pytest.mark.django_db]

Kind = IdempotencyEvent.Kind
RECORDS = reverse("admin:django_idempotency_idempotencyrecord_changelist")
EVENTS = reverse("admin:django_idempotency_idempotencyevent_changelist")
PURGE = reverse("admin:django_idempotency_idempotencyrecord_purge")


def record_url(record: IdempotencyRecord, view: str = "change") -> str:
    return reverse(f"admin:django_idempotency_idempotencyrecord_{view}", args=[record.pk])


@dataclass
class Seeded:
    """One record per situation an operator filters for, made the way production makes them."""

    replayed: IdempotencyRecord
    mismatched: IdempotencyRecord
    paid: IdempotencyRecord
    waited_for: IdempotencyRecord
    teapot: IdempotencyRecord
    expired: IdempotencyRecord
    redirect: IdempotencyRecord
    in_flight: IdempotencyRecord
    last_year: IdempotencyRecord

    def keys(self) -> set[str]:
        return {r.key for r in vars(self).values()}


@pytest.fixture
def seeded(api: APIClient) -> Seeded:
    probe(api, "replayed-1", label="a")
    probe(api, "replayed-1", label="a")
    probe(api, "replayed-1", label="a")
    probe(api, "mismatched-1", label="a")
    probe(api, "mismatched-1", label="changed")
    probe(api, "pay-1", label="pay", ref="order-9")
    probe(api, "pay-2", label="pay differently", ref="order-9")
    # 418 is stored but, not being a success, gives its reference back.
    probe(api, "teapot-1", label="tea", ref="order-10", **{"raise": "teapot"})
    probe(api, "waited-for-1", label="slow")
    waited_for = IdempotencyRecord.objects.get(key="waited-for-1")
    # What a copy refused with 409 while the original was running leaves behind.
    IdempotencyEvent.objects.create(
        kind=Kind.IN_FLIGHT,
        scope=waited_for.scope,
        key=waited_for.key,
        fingerprint=waited_for.fingerprint,
        at=waited_for.created_at + timedelta(milliseconds=5),
        expires_at=waited_for.expires_at,
    )
    now = timezone.now()
    expired = IdempotencyRecordFactory(
        key="expired-1",
        created_at=now - timedelta(days=2),
        expires_at=now - timedelta(days=1),
        response_status=200,
    )
    IdempotencyEvent.objects.create(
        kind=Kind.REPLAYED,
        scope=expired.scope,
        key=expired.key,
        fingerprint=expired.fingerprint,
        record=expired,
        expires_at=expired.expires_at,
    )
    get = IdempotencyRecord.objects.get
    return Seeded(
        replayed=get(key="replayed-1"),
        mismatched=get(key="mismatched-1"),
        paid=get(key="pay-1"),
        waited_for=waited_for,
        teapot=get(key="teapot-1"),
        expired=expired,
        redirect=IdempotencyRecordFactory(key="redirect-1", response_status=303),
        in_flight=IdempotencyRecordFactory(
            key="in-flight-1",
            state=IdempotencyRecord.State.IN_FLIGHT,
            response_status=None,
            response_body=b"",
            response_headers=[],
            completed_at=None,
        ),
        last_year=IdempotencyRecordFactory(
            key="last-year-1",
            created_at=now - timedelta(days=400),
            expires_at=now + timedelta(days=1),
        ),
    )


def shown(client: Client, url: str) -> set[str]:
    """The keys of the rows a changelist shows (and checks each is in the HTML)."""
    response = client.get(url)
    assert response.status_code == 200, url
    rows = response.context["cl"].result_list
    keys = {row.key for row in rows}
    html = response.content.decode()
    assert all(f">{key}<" in html for key in keys), url
    return keys


def test_the_list_shows_every_record_with_its_columns(admin_client: Client, seeded: Seeded) -> None:
    response = admin_client.get(RECORDS)
    assert response.status_code == 200
    assert {row.key for row in response.context["cl"].result_list} == seeded.keys()
    html = response.content.decode()
    for header in (
        "Key",
        "Scope",
        "Reference",
        "State",
        "Response status",
        "Created",
        "Expires",
        "Replays",
        "Conflicts",
        "Last seen",
    ):
        assert f">{header}<" in html, header
    assert "order-9" in html
    # Exactly one row carries the expired marker.
    assert html.count('class="idem-expired"') == 1
    assert "Purge expired records" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # The in-flight 409 found no committed record to count on: only the log knows it
        # (the event list's kind filter).
        ("conflicted=yes", {"mismatched", "paid"}),
        ("expired=yes", {"expired"}),
        ("status=4xx", {"teapot"}),
        ("status=5xx", set()),
        ("q=pay-1", {"paid"}),
        ("q=+pay-1+", {"paid"}),
        ("q=pay", set()),  # exact matches only: an index lookup, never a scan
        ("q=ref:order-9", {"paid"}),
        # A refused or failed request keeps the reference it asked for, but does not hold it.
        ("q=ref:order-10", {"teapot"}),
        ("conflicted=yes&expired=no", {"mismatched", "paid"}),
    ],
)
def test_each_filter_shows_its_rows(
    admin_client: Client, seeded: Seeded, query: str, expected: set[str]
) -> None:
    assert shown(admin_client, f"{RECORDS}?{query}") == {
        getattr(seeded, name).key for name in expected
    }


@pytest.mark.parametrize(
    ("query", "excluded"),
    [
        ("expired=no", {"expired"}),
    ],
)
def test_each_negative_filter_shows_the_rest(
    admin_client: Client, seeded: Seeded, query: str, excluded: set[str]
) -> None:
    excluded_keys = {getattr(seeded, name).key for name in excluded}
    assert shown(admin_client, f"{RECORDS}?{query}") == seeded.keys() - excluded_keys


def test_every_filter_choice_offered_renders(admin_client: Client, seeded: Seeded) -> None:
    response = admin_client.get(RECORDS)
    specs = response.context["cl"].filter_specs
    assert [spec.title for spec in specs] == ["expired", "refused a request", "response status"]
    offered = [
        choice["query_string"] for spec in specs for choice in spec.choices(response.context["cl"])
    ]
    assert len(offered) == 3 + 2 + 3
    for query in offered:
        keys = shown(admin_client, f"{RECORDS}{query}")
        assert keys <= seeded.keys()


@pytest.mark.parametrize(
    "query",
    [
        "replayed=yes",
        "state__exact=in_flight",
        "created_at__year=2026",
        "replay_count__gt=0",
        "response_body__contains=x",
        "fingerprint__icontains=f",
    ],
)
def test_lookups_that_would_scan_the_table_are_refused(admin_client: Client, query: str) -> None:
    # Django accepts any local-field lookup from the URL; here only the filters offered.
    assert admin_client.get(f"{RECORDS}?{query}").status_code == 400


def test_the_detail_page_shows_the_stored_response_and_fingerprint(
    admin_client: Client, seeded: Seeded
) -> None:
    record = seeded.paid
    response = admin_client.get(record_url(record))
    assert response.status_code == 200
    html = response.content.decode()
    assert record.fingerprint in html
    assert "201" in html
    assert "Content-Type: application/json" in html
    assert "ETag: &quot;v1&quot;" in html
    # Pretty-printed: one member per line, indented.
    assert "{\n  &quot;label&quot;: &quot;pay&quot;,\n  &quot;pad&quot;: &quot;&quot;\n}" in html
    assert "JSON" in html
    assert "ref:order-9" in html
    # Read-only: no save buttons, no form fields for the record.
    assert 'name="_save"' not in html
    assert 'name="key"' not in html


def test_the_detail_page_lists_the_records_events_inline(
    admin_client: Client, seeded: Seeded
) -> None:
    html = admin_client.get(record_url(seeded.paid)).content.decode()
    assert "pay-2" in html  # the key of the request the reference conflict refused
    assert "Reference conflict" in html.replace("reference conflict", "Reference conflict")
    assert f"{EVENTS}?about={seeded.paid.pk}" in html
    assert "1 event " in html

    html = admin_client.get(record_url(seeded.replayed)).content.decode()
    assert html.count(">replayed<") == 2
    assert "2 events" in html

    # The in-flight refusal has no link, yet shows on the record it waited for.
    html = admin_client.get(record_url(seeded.waited_for)).content.decode()
    assert "in flight (409)" in html
    assert "1 event " in html


def test_an_expired_record_is_marked_on_its_page(admin_client: Client, seeded: Seeded) -> None:
    html = admin_client.get(record_url(seeded.expired)).content.decode()
    assert 'class="idem-expired"' in html
    html = admin_client.get(record_url(seeded.replayed)).content.decode()
    assert 'class="idem-expired"' not in html


def test_a_large_body_is_cut_for_display(admin_client: Client) -> None:
    body = json.dumps({"pad": "x" * 20_000}).encode()
    record = IdempotencyRecordFactory(response_body=body)
    html = admin_client.get(record_url(record)).content.decode()
    pretty = json.dumps(json.loads(body), indent=2)
    assert f"first {BODY_PREVIEW_LIMIT} of {len(pretty)} characters shown" in html
    assert f"{len(body)} bytes, JSON" in html
    assert "x" * 20_000 not in html
    assert "x" * 1_000 in html


def test_a_binary_body_is_shown_as_hex(admin_client: Client) -> None:
    record = IdempotencyRecordFactory(
        response_body=b"\x89PNG\r\n\x1a\n\xff", response_headers=[["Content-Type", "image/png"]]
    )
    html = admin_client.get(record_url(record)).content.decode()
    assert "89 50 4e 47 0d 0a 1a 0a ff" in html
    assert "9 bytes, binary, shown as hex" in html


def test_a_plain_text_body_is_shown_as_is(admin_client: Client) -> None:
    record = IdempotencyRecordFactory(
        response_body=b"<p>done</p>", response_headers=[["Content-Type", "text/html"]]
    )
    html = admin_client.get(record_url(record)).content.decode()
    assert "&lt;p&gt;done&lt;/p&gt;" in html
    assert "11 bytes, text/html" in html


def test_an_in_flight_record_without_response_renders(admin_client: Client, seeded: Seeded) -> None:
    response = admin_client.get(record_url(seeded.in_flight))
    assert response.status_code == 200
    assert "in flight" in response.content.decode()


def test_records_cannot_be_added_changed_or_deleted(admin_client: Client, seeded: Seeded) -> None:
    add = reverse("admin:django_idempotency_idempotencyrecord_add")
    assert admin_client.get(add).status_code == 403
    assert admin_client.post(record_url(seeded.paid), {"key": "changed"}).status_code == 403
    assert admin_client.get(record_url(seeded.paid, "delete")).status_code == 403
    assert admin_client.post(record_url(seeded.paid, "delete"), {"post": "yes"}).status_code == 403
    assert IdempotencyRecord.objects.get(pk=seeded.paid.pk).key == "pay-1"
    actions = admin_client.get(RECORDS).context["action_form"].fields["action"].choices
    assert [name for name, _ in actions] == ["", "purge_selected"]


# -- events -------------------------------------------------------------------------------


def events_shown(client: Client, query: str = "") -> list[tuple[str, str]]:
    response = client.get(f"{EVENTS}?{query}")
    assert response.status_code == 200, query
    return sorted((e.kind, e.key) for e in response.context["cl"].result_list)


def test_the_event_list_and_its_filters(admin_client: Client, seeded: Seeded) -> None:
    everything = [
        (Kind.IN_FLIGHT, "waited-for-1"),
        (Kind.MISMATCH, "mismatched-1"),
        (Kind.REFERENCE, "pay-2"),
        (Kind.REPLAYED, "expired-1"),
        (Kind.REPLAYED, "replayed-1"),
        (Kind.REPLAYED, "replayed-1"),
    ]
    assert events_shown(admin_client) == everything
    for kind in Kind.values:
        assert events_shown(admin_client, f"kind__exact={kind}") == [
            e for e in everything if e[0] == kind
        ]
    # No search and no date hierarchy on the log: a record's events are one link away.
    assert events_shown(admin_client, "q=pay-2") == everything
    assert admin_client.get(f"{EVENTS}?at__year=2026").status_code == 400


def test_the_event_list_of_one_record(admin_client: Client, seeded: Seeded) -> None:
    assert (
        events_shown(admin_client, f"about={seeded.replayed.pk}")
        == [(Kind.REPLAYED, "replayed-1")] * 2
    )
    assert events_shown(admin_client, f"about={seeded.waited_for.pk}") == [
        (Kind.IN_FLIGHT, "waited-for-1")
    ]
    html = admin_client.get(f"{EVENTS}?about={seeded.paid.pk}").content.decode()
    assert str(seeded.paid) in html  # the filter names the record it shows
    assert f'href="{record_url(seeded.paid)}"' in html


def test_events_of_a_purged_record_still_list(admin_client: Client, seeded: Seeded) -> None:
    pk = seeded.expired.pk
    IdempotencyRecord.objects.filter(pk=pk)._raw_delete("default")
    assert events_shown(admin_client, f"about={pk}") == [(Kind.REPLAYED, "expired-1")]
    assert f"#{pk} (purged)" in admin_client.get(f"{EVENTS}?about={pk}").content.decode()


def test_the_event_detail_page(admin_client: Client, seeded: Seeded) -> None:
    event = IdempotencyEvent.objects.get(kind=Kind.REFERENCE)
    url = reverse("admin:django_idempotency_idempotencyevent_change", args=[event.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert event.fingerprint in html
    assert "pay-2" in html
    assert f'href="{record_url(seeded.paid)}"' in html
    assert 'name="_save"' not in html
    add = reverse("admin:django_idempotency_idempotencyevent_add")
    assert admin_client.get(add).status_code == 403
    assert admin_client.post(url, {"kind": "replayed"}).status_code == 403


# -- purge from the admin -----------------------------------------------------------------


def test_purge_action_deletes_only_expired_selected_rows(
    admin_client: Client, seeded: Seeded
) -> None:
    selected = [seeded.expired.pk, seeded.paid.pk]
    response = admin_client.post(
        RECORDS,
        {"action": "purge_selected", "_selected_action": selected, "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("Purged 1 expired records and 1 events in 1 batch (") for m in messages)
    assert any("1 selected record has not expired" in m for m in messages)
    assert not IdempotencyRecord.objects.filter(pk=seeded.expired.pk).exists()
    assert IdempotencyRecord.objects.filter(pk=seeded.paid.pk).exists()
    assert not IdempotencyEvent.objects.filter(key="expired-1").exists()


def test_purge_page_previews_then_purges_all_expired(admin_client: Client, seeded: Seeded) -> None:
    IdempotencyRecordFactory(key="expired-2", expires_at=timezone.now() - timedelta(minutes=1))
    preview = admin_client.get(PURGE)
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "2 expired records can be purged" in html
    assert "with 1 event" in html
    assert IdempotencyRecord.objects.expired().count() == 2

    done = admin_client.post(PURGE, follow=True)
    assert done.redirect_chain == [(RECORDS, 302)]
    assert not IdempotencyRecord.objects.expired().exists()
    assert shown(admin_client, RECORDS) == seeded.keys() - {"expired-1"}


def test_staff_without_delete_permission_can_look_but_not_purge(seeded: Seeded) -> None:
    staff = UserFactory(username="viewer", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_idempotency", codename__startswith="view_"
        )
    )
    client = Client()
    client.force_login(staff)

    response = client.get(RECORDS)
    assert response.status_code == 200
    assert "Purge expired records" not in response.content.decode()
    assert response.context["action_form"] is None  # no action this user may run
    assert client.get(PURGE).status_code == 403
    assert client.post(PURGE).status_code == 403
    assert client.get(record_url(seeded.paid)).status_code == 200
    assert client.get(EVENTS).status_code == 200
    assert IdempotencyRecord.objects.expired().count() == 1


# -- outbox -------------------------------------------------------------------------------

OUTBOX = reverse("admin:django_idempotency_outboxmessage_changelist")


def outbox_seeded() -> dict[str, OutboxMessage]:
    """A message waiting, one failing, one parked, set aside by the outbox's own routine."""

    def send(message: OutboxMessage) -> None:
        if message.task_id != "waiting-1":
            raise ValueError(f"<b>refused</b> {message.task_id}")

    waiting = OutboxMessage.objects.add(task_id="waiting-1", name="shop.ship_order", args=[1])
    failing = OutboxMessage.objects.add(task_id="failing-1", name="shop.ship_order", args=[2])
    parked = OutboxMessage.objects.add(
        task_id="parked-1", name="shop.refund", kwargs={"amount": "9.50"}, options={"queue": "q"}
    )
    OutboxMessage.objects.filter(pk=parked.pk).send_each(send, batch_size=1, max_attempts=1)
    OutboxMessage.objects.filter(pk=failing.pk).send_each(send, batch_size=1, max_attempts=5)
    return {"waiting": waiting, "failing": failing, "parked": parked}


def outbox_shown(client: Client, query: str = "") -> set[str]:
    response = client.get(f"{OUTBOX}?{query}")
    assert response.status_code == 200, query
    return {message.task_id for message in response.context["cl"].result_list}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"waiting-1", "failing-1", "parked-1"}),
        ("state=parked", {"parked-1"}),
        ("state=failing", {"failing-1"}),
        ("state=waiting", {"waiting-1"}),
        ("state=nope", set()),
        ("q=parked-1", {"parked-1"}),
        ("q=shop.ship_order", {"waiting-1", "failing-1"}),
        ("q=parked", set()),  # exact matches only
    ],
)
def test_the_outbox_list_and_its_filters(
    admin_client: Client, query: str, expected: set[str]
) -> None:
    outbox_seeded()
    assert outbox_shown(admin_client, query) == expected


def test_the_outbox_list_shows_state_attempts_and_error(admin_client: Client) -> None:
    outbox_seeded()
    html = admin_client.get(OUTBOX).content.decode()
    for header in ("Task id", "Task name", "Created", "State", "Failed attempts", "Last error"):
        assert f">{header}<" in html, header
    assert ">parked<" in html
    assert ">failing<" in html
    assert ">waiting<" in html
    assert "&lt;b&gt;refused&lt;/b&gt; parked-1" in html  # escaped, never rendered
    assert admin_client.get(f"{OUTBOX}?attempts__gt=0").status_code == 400


def test_the_outbox_detail_page(admin_client: Client) -> None:
    parked = outbox_seeded()["parked"]
    url = reverse("admin:django_idempotency_outboxmessage_change", args=[parked.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "ValueError: &lt;b&gt;refused&lt;/b&gt; parked-1" in html
    assert "&quot;amount&quot;: &quot;9.50&quot;" in html
    assert "&quot;queue&quot;: &quot;q&quot;" in html


def test_outbox_messages_cannot_be_added_changed_or_deleted(admin_client: Client) -> None:
    parked = outbox_seeded()["parked"]
    change = reverse("admin:django_idempotency_outboxmessage_change", args=[parked.pk])
    delete = reverse("admin:django_idempotency_outboxmessage_delete", args=[parked.pk])
    assert (
        admin_client.get(reverse("admin:django_idempotency_outboxmessage_add")).status_code == 403
    )
    assert admin_client.post(change, {"task_id": "changed"}).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert OutboxMessage.objects.get(pk=parked.pk).task_id == "parked-1"
    assert admin_client.get(OUTBOX).context["action_form"] is None  # no action at all
