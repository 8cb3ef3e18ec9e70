"""Two ways to send the same POST: Django's test client in-process, and HTTP over keep-alive."""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter_ns
from typing import Protocol

import requests
from django.test import Client


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    elapsed_ns: int


class Sender(Protocol):
    def post(self, path: str, body: bytes, key: str | None) -> Reply: ...


class InProcess:
    """The full Django/DRF stack without a socket: the stablest signal for the layer's cost."""

    def __init__(self, token: str) -> None:
        self.client = Client()
        self.authorization = f"Token {token}"

    def post(self, path: str, body: bytes, key: str | None) -> Reply:
        extra = {"HTTP_AUTHORIZATION": self.authorization}
        if key is not None:
            extra["HTTP_IDEMPOTENCY_KEY"] = key
        start = perf_counter_ns()
        response = self.client.post(path, data=body, content_type="application/json", **extra)
        elapsed = perf_counter_ns() - start
        return Reply(response.status_code, response.content, elapsed)


class OverHttp:
    """Sequential requests on one keep-alive connection, as a client library sends them."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        )

    def post(self, path: str, body: bytes, key: str | None) -> Reply:
        headers = {} if key is None else {"Idempotency-Key": key}
        start = perf_counter_ns()
        response = self.session.post(self.base_url + path, data=body, headers=headers, timeout=30)
        content = response.content
        elapsed = perf_counter_ns() - start
        return Reply(response.status_code, content, elapsed)

    def close(self) -> None:
        self.session.close()
