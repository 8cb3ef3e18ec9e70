"""Capturing a response for storage and rebuilding it, byte for byte, for a replay."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.template.response import SimpleTemplateResponse

from ..conf import app_settings, is_never_stored
from ..exceptions import ResponseNotStorable
from .problems import PROBLEM_CONTENT_TYPE, problem_document, render_json

REPLAYED_HEADER = "Idempotent-Replayed"
TOO_LARGE_CODE = "idempotency-response-too-large"

# Headers that describe the body: an oversized body's substitute must not carry them.
_REPRESENTATION_HEADERS = frozenset(
    {
        "content-type",
        "content-language",
        "content-disposition",
        "content-encoding",
        "content-range",
        "content-md5",
        "digest",
        "content-digest",
        "repr-digest",
        "etag",
        "last-modified",
    }
)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def capture(cls, response: HttpResponseBase) -> StoredResponse:
        """What a replay needs of a rendered response (a template response is rendered first).

        Every header is kept except the never-stored ones (``conf.is_never_stored``). A body over
        ``IDEMPOTENCY_MAX_STORED_BODY_SIZE`` is replaced by a problem document pointing to the
        resource (``too_large``), so the effect still commits and a retry never runs it again.
        A streaming response is refused: the view chose a shape that cannot be replayed.
        """
        if isinstance(response, StreamingHttpResponse) or response.streaming:
            raise ResponseNotStorable(
                "The view returned a streaming response, which cannot be stored for replay; "
                "its effects were rolled back."
            )
        if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
            # Django's handler renders a TemplateResponse after the view; the bytes are
            # needed now, as the DRF door renders its Response before it is stored.
            response.render()
        if not isinstance(response, HttpResponse):
            raise ResponseNotStorable(
                f"The view returned a {type(response).__name__}, whose body cannot be stored "
                "for replay; its effects were rolled back."
            )
        headers = _storable_headers(response)
        body = response.content
        if len(body) > app_settings.MAX_STORED_BODY_SIZE:
            return cls.too_large(response.status_code, headers, len(body))
        return cls(status=response.status_code, headers=headers, body=body)

    @classmethod
    def too_large(cls, status: int, headers: list[tuple[str, str]], size: int) -> StoredResponse:
        """The stored stand-in for an oversized answer: same status, same ``Location``.

        The status stays the original one: a retry learns that the operation happened (a 4xx
        or 5xx here would invite a second attempt under a new key, that is a duplicate).
        """
        kept = [
            (name, value) for name, value in headers if name.lower() not in _REPRESENTATION_HEADERS
        ]
        location = next((value for name, value in kept if name.lower() == "location"), None)
        where = f" The resource it created is at {location}." if location else ""
        document = problem_document(
            status=status,
            code=TOO_LARGE_CODE,
            title="Response too large to replay",
            detail=(
                f"The original request was performed (status {status}), but its response "
                f"({size} bytes) was larger than IDEMPOTENCY_MAX_STORED_BODY_SIZE, so this "
                f"replay cannot repeat it.{where}"
            ),
            **({"location": location} if location else {}),
        )
        body = render_json(document)
        return cls(
            status=status,
            headers=[*kept, ("Content-Type", PROBLEM_CONTENT_TYPE)],
            body=body,
        )

    def replay(self) -> HttpResponse:
        response = HttpResponse(self.body, status=self.status)
        # HttpResponse always sets a Content-Type; the stored one (or none) is the truth.
        del response["Content-Type"]
        for name, value in self.headers:
            response[name] = value
        response[REPLAYED_HEADER] = "true"
        return response


def _storable_headers(response: HttpResponse) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in response.items()
        # JSON columns (jsonb) cannot hold a NUL; a header with one is not replayable anyway.
        if not is_never_stored(name) and "\x00" not in value
    ]
