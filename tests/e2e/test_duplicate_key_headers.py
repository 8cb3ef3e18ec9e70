"""Two Idempotency-Key header lines over real HTTP (gunicorn joins them): a 400, nothing runs."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from .conftest import Server

pytestmark = [pytest.mark.drf, pytest.mark.e2e, pytest.mark.postgres]


def test_two_key_headers_are_one_refused_list(example_server: Server) -> None:
    url = urlsplit(example_server.url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    body = json.dumps({"item": "widget", "quantity": 1})
    connection.putrequest("POST", "/api/orders/")
    for name, value in [
        *example_server.headers.items(),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Idempotency-Key", "first"),
        ("Idempotency-Key", "second"),
    ]:
        connection.putheader(name, value)
    connection.endheaders(body.encode())
    response = connection.getresponse()
    document = json.loads(response.read())
    connection.close()
    assert response.status == 400, document
    assert response.getheader("Content-Type") == "application/problem+json"
    assert document["type"].endswith("#invalid-idempotency-key")
    with example_server.connect() as database:
        orders = database.execute("SELECT count(*) FROM shop_order").fetchone()
        records = database.execute(
            "SELECT count(*) FROM django_idempotency_idempotencyrecord"
        ).fetchone()
    assert orders == (0,)
    assert records == (0,)
