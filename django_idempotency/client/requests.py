"""The client helper on ``requests`` (``pip install django-idempotency[client]``)."""

from __future__ import annotations

import time
from typing import Any

import requests

from .attempts import Attempts, Result
from .keys import choose_key
from .policy import RetryPolicy

#: Errors after which the request may or may not have reached the server: retried with the same
#: key. Not certificate errors or malformed URLs: another attempt cannot change those.
RETRIED_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
NEVER_RETRIED: tuple[type[Exception], ...] = (requests.exceptions.SSLError,)


class IdempotentSession:
    """Sends each call as one logical request: one key, reused by every retry of it.

    ``session`` (default: a new ``requests.Session``) carries the auth and base headers.
    ``request`` returns a ``Result`` (``.response``, ``.key``, ``.attempts``, ``.outcome``) or
    raises ``GaveUp`` (with the key) when no answer came back at all.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float | tuple[float, float] = 10.0,
        header: str = "Idempotency-Key",
    ) -> None:
        self.session = session if session is not None else requests.Session()
        self.policy = policy if policy is not None else RetryPolicy()
        self.timeout = timeout
        self.header = header

    def request(
        self,
        method: str,
        url: str,
        *,
        key: str | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> Result[requests.Response]:
        """``session.request(method, url, **kwargs)`` until it has a final answer.

        ``key``: resume a logical request sent before (its ``Result.key`` or ``GaveUp.key``);
        ``label``: name the downstream call inside an operation (see ``keys.choose_key``).
        The body must be one that can be sent again (bytes, str, ``json=``, ``data=`` dict).
        """
        key = choose_key(method, url, key=key, label=label)
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None:
            headers[self.header] = key
        kwargs.setdefault("timeout", self.timeout)
        attempts = Attempts(self.policy, key)
        while True:
            try:
                response = self.session.request(method, url, headers=headers, **kwargs)
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
                response.close()
            time.sleep(wait)

    def post(self, url: str, **kwargs: Any) -> Result[requests.Response]:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Result[requests.Response]:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Result[requests.Response]:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Result[requests.Response]:
        return self.request("DELETE", url, **kwargs)
