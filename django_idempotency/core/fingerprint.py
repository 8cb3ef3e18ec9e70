"""The request fingerprint: what makes two requests under one key "the same request"."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException

from ..exceptions import PayloadTooLarge

_JSON_SUFFIX = "+json"


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 over method, path with query string, media type, charset and body.

    Two requests that DRF could treat differently must never share a fingerprint (that would
    replay one's answer to the other); the reverse, a harmless 422, is the price of exactness.
    """
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0")
    digest.update(request.get_full_path().encode())
    digest.update(b"\0")
    query = str(request.META.get("QUERY_STRING", ""))
    if not query.isascii():
        # get_full_path() escapes raw bytes as if they were latin-1 text, so a raw "é" and the
        # escaped "Ã©" look alike, while request.GET decodes them as two values: add the bytes.
        digest.update(b"raw-query:" + query.encode("utf-8", "surrogatepass") + b"\0")
    media_type, charset = _media_type(request)
    # Both are parsed from the Content-Type; their characters are ASCII-escaped for hashing.
    digest.update(json.dumps([media_type, charset]).encode())
    digest.update(b"\0")
    digest.update(_body_identity(request, media_type, charset))
    return digest.hexdigest()


def read_body(request: HttpRequest) -> bytes:
    """The raw body, cached on the request; over DATA_UPLOAD_MAX_MEMORY_SIZE it is a 413."""
    try:
        return request.body
    except RequestDataTooBig as exc:
        raise PayloadTooLarge(str(exc)) from exc


def _media_type(request: HttpRequest) -> tuple[str, str]:
    """The media type and charset parameter, both case-folded (their names are case-blind)."""
    media_type = (request.content_type or "").strip().lower()
    params = request.content_params or {}
    charset = str(params.get("charset", "")).strip().lower()
    return media_type, charset


def _body_identity(request: HttpRequest, media_type: str, charset: str) -> bytes:
    try:
        body = read_body(request)
    except RawPostDataException:
        # Django's CSRF middleware parsed a multipart form before the view, consuming the
        # stream; the parsed parts identify it, as they would anyway (see below).
        return b"multipart:" + _multipart_identity(request)
    if _is_json(media_type):
        canonical = canonical_json(body, charset)
        if canonical is not None:
            return b"json:" + canonical
    elif media_type == "multipart/form-data" and body:
        # Clients pick a fresh boundary for every attempt, so the parts are compared instead.
        try:
            return b"multipart:" + _multipart_identity(request)
        except (MultiPartParserError, UnicodeError):
            pass  # DRF's parser will refuse it with a 400; the bytes identify it meanwhile.
    return b"raw:" + body


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith(_JSON_SUFFIX)


class _Lexeme(str):
    """A JSON number exactly as sent: ``1``, ``1.0`` and ``1E0`` stay three values, because a
    ``CharField`` or a ``DecimalField`` keeps the difference that a float would lose."""


def canonical_json(body: bytes, charset: str = "") -> bytes | None:
    """The document with object members in key order and no insignificant whitespace.

    Nothing else is normalised: numbers keep their lexemes, duplicate member names stay (in
    their order, as the parser that keeps the last one sees them), and the text is decoded with
    the request's charset, as DRF's parser decodes it.
    """
    try:
        text = body.decode(charset or "utf-8")
        document = json.loads(
            text,
            parse_float=_Lexeme,
            parse_int=_Lexeme,
            parse_constant=_Lexeme,
            object_pairs_hook=_sorted_members,
        )
        return _canonical(document).encode()
    except (ValueError, LookupError, RecursionError):
        return None  # not JSON we can canonicalise (or an unknown charset): its bytes count


def _sorted_members(pairs: list[tuple[str, Any]]) -> _Members:
    # A stable sort: duplicate names keep their relative order, which decides their meaning.
    return _Members(sorted(pairs, key=lambda pair: pair[0]))


class _Members(list[tuple[str, Any]]):
    """A JSON object's members, sorted by name."""


def _canonical(value: Any) -> str:
    if isinstance(value, _Members):
        return "{" + ",".join(f"{_string(k)}:{_canonical(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, _Lexeme):
        return str.__str__(value)
    if isinstance(value, str):
        return _string(value)
    return json.dumps(value)  # True, False, None


def _string(value: str) -> str:
    # ASCII escapes: equal strings, equal bytes, and lone surrogates cannot break the encoding.
    return json.dumps(value)


def _multipart_identity(request: HttpRequest) -> bytes:
    parts: list[Any] = sorted((name, request.POST.getlist(name)) for name in request.POST)
    for name in sorted(request.FILES):
        for upload in request.FILES.getlist(name):
            file_digest = hashlib.sha256()
            for chunk in upload.chunks():
                file_digest.update(chunk)
            upload.seek(0)
            parts.append((name, upload.name, upload.content_type, file_digest.hexdigest()))
    return json.dumps(parts, ensure_ascii=False).encode()
