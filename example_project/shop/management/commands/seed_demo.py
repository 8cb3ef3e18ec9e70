"""``manage.py seed_demo``: a demo user, its API token, an order to pay, and curl to try them."""

from __future__ import annotations

import secrets
import shlex
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

from example_project.shop.models import Order

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
# The seeded order the printed payment command pays; a paid one is never reused.
SEEDED_ITEM = "seeded demo order"


class Command(BaseCommand):
    help = "Create (or reuse) the demo user and its token, and print curl commands to try the API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the server will listen, for the printed commands.",
        )

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
            # Reset the password on every run, so "demo/demo" holds even after someone changed it.
            user.set_password(DEMO_PASSWORD)
            # The demo's admin shows the stored keys: the demo user may log in there.
            user.is_staff = user.is_superuser = True
            user.save()
            token, _ = Token.objects.get_or_create(user=user)
            order = (
                Order.objects.filter(owner=user, item=SEEDED_ITEM, payments__isnull=True)
                .order_by("id")
                .first()
            ) or Order.objects.create(owner=user, item=SEEDED_ITEM, quantity=1)

        self.stdout.write(
            f"{'Created' if created else 'Reusing'} user {DEMO_USERNAME!r} "
            f"(password {DEMO_PASSWORD!r}), API token: {token.key}"
        )
        self.stdout.write(
            f"Admin: {base_url}/admin/ (log in as {DEMO_USERNAME} / {DEMO_PASSWORD}); "
            f"endpoints and examples: {base_url}/"
        )
        self.stdout.write("")
        # Fresh keys per run: pasting a command twice is a retry, re-seeding starts afresh.
        run = secrets.token_hex(4)
        self._example(
            "1. Create an order (201, with a Location header):",
            base_url,
            token.key,
            "/api/orders/",
            f"order-{run}",
            '{"item": "book", "quantity": 2}',
        )
        self._example(
            "2. Send the very same request again: the stored 201 comes back byte for byte,\n"
            "   with 'Idempotent-Replayed: true'; no second order is created:",
            base_url,
            token.key,
            "/api/orders/",
            f"order-{run}",
            '{"item": "book", "quantity": 2}',
        )
        payment = f'{{"order": {order.pk}, "amount": "25.00"}}'
        self._example(
            f"3. Pay order {order.pk} (201; the gateway's charge id is in the body):",
            base_url,
            token.key,
            "/api/payments/",
            f"payment-{run}",
            payment,
        )
        self._example(
            f"4. Pay order {order.pk} again under a NEW key: one payment per order, so the\n"
            "   first payment is replayed instead of charging twice:",
            base_url,
            token.key,
            "/api/payments/",
            f"payment-{run}-again",
            payment,
        )
        self._example(
            "5. Refund that payment (put the payment's id from step 3 in place of PAYMENT_ID);\n"
            "   one refund per payment, whatever the key, and never more than was paid:",
            base_url,
            token.key,
            "/api/payments/PAYMENT_ID/refund/",
            f"refund-{run}",
            '{"amount": "5.00"}',
        )
        self.stdout.write(
            f"List them: curl -s -H 'Authorization: Token {token.key}' {base_url}/api/orders/"
        )
        self.stdout.write("")
        self._other_doors(base_url, token.key, run)

    def _example(
        self, title: str, base_url: str, token: str, path: str, key: str, body: str
    ) -> None:
        self.stdout.write(title)
        self.stdout.write(
            f"  curl -i -X POST {base_url}{path} \\\n"
            f"    -H 'Authorization: Token {token}' \\\n"
            f"    -H 'Content-Type: application/json' \\\n"
            f"    -H 'Idempotency-Key: {key}' \\\n"
            f"    -d {shlex.quote(body)}"
        )
        self.stdout.write("")

    def _other_doors(self, base_url: str, token: str, run: str) -> None:
        """The same guarantees through the HTML form, django-ninja and server-issued keys."""
        body = shlex.quote('{"item": "book", "quantity": 1}')
        self.stdout.write(
            f"6. In a browser: log in at {base_url}/accounts/login/ "
            f"({DEMO_USERNAME}/{DEMO_PASSWORD}), then\n"
            f"   {base_url}/shop/checkout/ - double-click 'Place order': one order, both clicks\n"
            "   end on its page (the form carries a signed, server-issued key)."
        )
        self.stdout.write("")
        for number, path in (("7", "/ninja/orders/"), ("8", "/ninja/async/orders/")):
            self.stdout.write(
                f"{number}. django-ninja ({'async def' if 'async' in path else 'sync'}), "
                "the DRF token as a Bearer token; run it twice for the replay:"
            )
            self.stdout.write(
                f"  curl -i -X POST {base_url}{path} \\\n"
                f"    -H 'Authorization: Bearer {token}' \\\n"
                f"    -H 'Content-Type: application/json' \\\n"
                f"    -H 'Idempotency-Key: ninja-{number}-{run}' \\\n"
                f"    -d {body}"
            )
            self.stdout.write("")
        transfer = shlex.quote('{"amount": "10.00", "to": "bob"}')
        self.stdout.write(
            "9. Server-issued keys: transfers accept only a key from /api/idempotency-keys/:"
        )
        self.stdout.write(
            f"  KEY=$(curl -s -X POST {base_url}/api/idempotency-keys/ "
            f"-H 'Authorization: Token {token}' \\\n"
            "    | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"key\"])')\n"
            f"  curl -i -X POST {base_url}/api/transfers/ \\\n"
            f"    -H 'Authorization: Token {token}' \\\n"
            "    -H 'Content-Type: application/json' \\\n"
            '    -H "Idempotency-Key: $KEY" \\\n'
            f"    -d {transfer}"
        )
        self.stdout.write("")
        self.stdout.write(
            "Under ASGI: .venv/bin/uvicorn example_project.asgi:application --port 8000 "
            "serves every route above."
        )
