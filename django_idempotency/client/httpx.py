"""The client helper on ``httpx``, sync and async (``pip install django-idempotency[client]``)."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx

from .attempts import Attempts, Result
from .keys import choose_key
from .policy import RetryPolicy

#: Timeouts, refused or dropped connections, a server that closed without answering: the
#: request may or may not have reached it, so it is sent again with the same key.
RETRIED_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)
#: Transport errors another attempt cannot change.
NEVER_RETRIED: tuple[type[Exception], ...] = (httpx.UnsupportedProtocol,)


class _Options:
    def __init__(
        self, policy: RetryPolicy | None, timeout: float | httpx.Timeout, header: str
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.timeout = timeout
        self.header = header

    def prepare(
        self, method: str, url: str, key: str | None, label: str | None, kwargs: dict[str, Any]
    ) -> Attempts:
        key = choose_key(method, str(url), key=key, label=label)
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers[self.header] = key
        kwargs["headers"] = headers
        kwargs.setdefault("timeout", self.timeout)
        return Attempts(self.policy, key)


class IdempotentClient(_Options):
    """``httpx.Client`` calls, each one logical request with one key (see
    ``client.requests.IdempotentSession``, which behaves the same)."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 10.0,
        header: str = "Idempotency-Key",
    ) -> None:
        super().__init__(policy, timeout, header)
        self.client = client if client is not None else httpx.Client()

    def request(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> Result[httpx.Response]:
        attempts = self.prepare(method, url, key, label, kwargs)
        while True:
            try:
                response = self.client.request(method, url, **kwargs)
            except NEVER_RETRIED:
                raise
            except RETRIED_ERRORS as error:
                wait = attempts.failed(error)
                if wait is None:
                    raise attempts.gave_up() from error
            else:
                verdict, wait = attempts.answered(
                    response.status_code, response.headers, response.content
                )
                if wait is None:
                    return attempts.result(response, verdict, response.headers)
            time.sleep(wait)

    def post(self, url: str, **kwargs: Any) -> Result[httpx.Response]:
        return self.request("POST", url, **kwargs)


class AsyncIdempotentClient(_Options):
    """The same on ``httpx.AsyncClient``; waits with ``anyio.sleep`` (asyncio or trio)."""

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 10.0,
        header: str = "Idempotency-Key",
    ) -> None:
        super().__init__(policy, timeout, header)
        self.client = client if client is not None else httpx.AsyncClient()

    async def request(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> Result[httpx.Response]:
        attempts = self.prepare(method, url, key, label, kwargs)
        while True:
            try:
                response = await self.client.request(method, url, **kwargs)
            except NEVER_RETRIED:
                raise
            except RETRIED_ERRORS as error:
                wait = attempts.failed(error)
                if wait is None:
                    raise attempts.gave_up() from error
            else:
                verdict, wait = attempts.answered(
                    response.status_code, response.headers, response.content
                )
                if wait is None:
                    return attempts.result(response, verdict, response.headers)
            await anyio.sleep(wait)

    async def post(self, url: str, **kwargs: Any) -> Result[httpx.Response]:
        return await self.request("POST", url, **kwargs)
