"""Render the idempotency admin of a seeded example project in headless Chromium.

    python scripts/admin_screenshots.py [--out docs/images] [--chromium chromium]

Builds a throwaway SQLite copy of the example project, sends it real API traffic (orders,
retries, a changed body, a double payment), renders the admin pages as a logged-in superuser
with Django's test client, serves them with the admin's static files on 127.0.0.1, and has
Chromium save one PNG per page. Needs Chromium (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="idempotency-admin-") as scratch:
        site = Path(scratch) / "site"
        pages = render_pages(Path(scratch) / "db.sqlite3", site)
        with serve(site) as base_url:
            args.out.mkdir(parents=True, exist_ok=True)
            for name, (width, height) in pages.items():
                target = args.out / f"{name}.png"
                screenshot(args.chromium, f"{base_url}/{name}.html", target, width, height)
                print(
                    f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
                )


def render_pages(database: Path, site: Path) -> dict[str, tuple[int, int]]:
    """Seed the example project and write the admin pages as static HTML into ``site``."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    import django

    django.setup()
    from django.contrib import admin as django_admin
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    # The pages, not the app menu, are what the screenshots are about.
    django_admin.site.enable_nav_sidebar = False
    call_command("migrate", verbosity=0)
    seeded = seed()
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
    client = Client()
    client.force_login(admin)

    records = reverse("admin:django_idempotency_idempotencyrecord_changelist")
    record = reverse("admin:django_idempotency_idempotencyrecord_change", args=[seeded["payment"]])
    events = reverse("admin:django_idempotency_idempotencyevent_changelist")
    pages = {
        "admin-records": (records, (1760, 900)),
        "admin-record": (record, (1400, 1840)),
        "admin-events": (events, (1600, 720)),
    }
    site.mkdir(parents=True)
    for name, (url, _size) in pages.items():
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        (site / f"{name}.html").write_bytes(response.content)
    static = site / "static" / "admin"
    shutil.copytree(Path(django.__file__).parent / "contrib" / "admin" / "static" / "admin", static)
    return {name: size for name, (_url, size) in pages.items()}


def seed() -> dict[str, Any]:
    """Real traffic through the example API, then spread over the last hours like real life."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from django_idempotency.models import IdempotencyRecord

    clients = []
    for name in ("ana", "ben"):
        client = APIClient()
        client.force_authenticate(get_user_model().objects.create_user(name, password="x"))
        clients.append(client)
    ana, ben = clients

    def post(client: APIClient, path: str, key: str, body: dict[str, Any]) -> Any:
        return client.post(f"/api/{path}/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    # Older traffic; the first three will show as expired.
    for number in range(1, 7):
        post(ana, "orders", f"ord-{1000 + number}", {"item": f"lamp #{number}", "quantity": 1})
    post(ben, "notes", "note-7f3a", {"text": "leave at the door"})

    # A mobile client retrying on a flaky network: the stored 201 comes back each time.
    order = post(ana, "orders", "c0ffee-order-42", {"item": "espresso machine", "quantity": 1})
    for _ in range(3):
        post(ana, "orders", "c0ffee-order-42", {"item": "espresso machine", "quantity": 1})
    # A client bug: the same key reused for another order.
    post(ana, "orders", "c0ffee-order-42", {"item": "grinder", "quantity": 2})

    # "I was charged twice": retries of one payment, one under a new key, and a changed amount.
    order_id = order.json()["id"]
    payment = post(ana, "payments", "pay-9b1d", {"order": order_id, "amount": "349.00"})
    assert payment.status_code == 201, payment.content
    _in_flight_refusal(IdempotencyRecord.objects.get(key="pay-9b1d"))
    post(ana, "payments", "pay-9b1d", {"order": order_id, "amount": "349.00"})
    post(ana, "payments", "pay-9b1d-retry", {"order": order_id, "amount": "349.00"})
    post(ana, "payments", "pay-77e0", {"order": order_id, "amount": "34.90"})
    # A declined card is stored (402) and gives its reference back.
    big = post(ben, "orders", "ben-order-1", {"item": "piano", "quantity": 1}).json()["id"]
    post(ben, "payments", "ben-pay-1", {"order": big, "amount": "25000.00"})
    post(ben, "payments", "ben-pay-1", {"order": big, "amount": "25000.00"})

    _spread_over_time(expired={"ord-1001", "ord-1002", "ord-1003"})
    return {"payment": IdempotencyRecord.objects.get(key="pay-9b1d").pk}


def _in_flight_refusal(record: Any) -> None:
    """The 409 a copy got while the first payment was still running.

    On SQLite that race cannot be staged reliably, so its log entry is written by the function
    the signal receiver calls, with the arguments the engine would pass.
    """
    from django_idempotency.core.events import record_event
    from django_idempotency.core.operation import Operation
    from django_idempotency.models import IdempotencyEvent

    operation = Operation(
        database="default",
        scope=record.scope,
        key=record.key,
        fingerprint=record.fingerprint,
        method="POST",
        path=record.request_path,
        reference=record.requested_reference,
        ttl=timedelta(hours=24),
        lock_timeout=5,
    )
    record_event(operation, IdempotencyEvent.Kind.IN_FLIGHT, None)


def _spread_over_time(*, expired: set[str]) -> None:
    """Move the seeded rows back in time: a record every few minutes, retries seconds later."""
    from django.utils import timezone

    from django_idempotency.models import IdempotencyEvent, IdempotencyRecord

    now = timezone.now().replace(microsecond=0)
    records = list(IdempotencyRecord.objects.order_by("-pk"))
    for index, record in enumerate(records):
        age = timedelta(minutes=13 * index + 4, seconds=17 * index)
        if record.key in expired:
            age += timedelta(days=2)
        created = now - age
        record.created_at = created
        record.completed_at = created + timedelta(milliseconds=180 + 37 * index)
        record.expires_at = created + timedelta(hours=24)
        events = list(IdempotencyEvent.objects.about(record).order_by("pk"))
        for number, event in enumerate(events, start=1):
            event.at = created + timedelta(seconds=number * 9 - 8.6)
            event.expires_at = record.expires_at
            event.save(update_fields=["at", "expires_at"])
        record.last_seen_at = events[-1].at if events else None
        record.save(update_fields=["created_at", "completed_at", "expires_at", "last_seen_at"])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".html": "text/html; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


class serve:
    """Serve ``root`` on a free port of 127.0.0.1 for the screenshots."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def screenshot(chromium: str, url: str, target: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={target}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


if __name__ == "__main__":
    main()
