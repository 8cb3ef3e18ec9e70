"""Capturing a response for storage and rebuilding it, byte for byte, for a replay."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

from .conf import NEVER_STORED_HEADERS, app_settings
from .exceptions import ResponseNotStorable

REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def capture(cls, response: HttpResponseBase) -> StoredResponse:
        """What a replay needs of a rendered response; refuses what cannot be stored whole."""
        if isinstance(response, StreamingHttpResponse) or response.streaming:
            raise ResponseNotStorable(
                "The view returned a streaming response, which cannot be stored for replay; "
                "its effects were rolled back."
            )
        assert isinstance(response, HttpResponse)
        body = response.content
        limit = app_settings.MAX_STORED_BODY_SIZE
        if len(body) > limit:
            raise ResponseNotStorable(
                f"The response body ({len(body)} bytes) is larger than "
                f"IDEMPOTENCY_MAX_STORED_BODY_SIZE ({limit} bytes); its effects were rolled back."
            )
        wanted = {name.lower() for name in app_settings.REPLAY_HEADERS}
        headers = [
            (name, value)
            for name, value in response.items()
            if name.lower() in wanted and name.lower() not in NEVER_STORED_HEADERS
        ]
        return cls(status=response.status_code, headers=headers, body=body)

    def replay(self) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status)
        # HttpResponse always sets a Content-Type; the stored one (or none) is the truth.
        del response["Content-Type"]
        for name, value in self.headers:
            response[name] = value
        response[REPLAYED_HEADER] = "true"
        return response
