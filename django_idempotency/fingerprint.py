"""The request fingerprint: what makes two requests under one key "the same request"."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException

from .exceptions import PayloadTooLarge

_JSON_SUFFIX = "+json"


def request_fingerprint(request: HttpRequest) -> str:
    """SHA-256 over method, path with query string and body (JSON in canonical form)."""
    digest = hashlib.sha256()
    digest.update(request.method.encode() if request.method else b"")
    digest.update(b"\0")
    digest.update(request.get_full_path().encode())
    digest.update(b"\0")
    digest.update(_body_identity(request))
    return digest.hexdigest()


def read_body(request: HttpRequest) -> bytes:
    """The raw body, cached on the request; over DATA_UPLOAD_MAX_MEMORY_SIZE it is a 413."""
    try:
        return request.body
    except RequestDataTooBig as exc:
        raise PayloadTooLarge(str(exc)) from exc


def _body_identity(request: HttpRequest) -> bytes:
    media_type = request.content_type or ""
    try:
        body = read_body(request)
    except RawPostDataException:
        # Django's CSRF middleware parsed a multipart form before the view, consuming the
        # stream; the parsed parts identify it, as they would anyway (see below).
        return b"multipart:" + _multipart_identity(request)
    if _is_json(media_type):
        canonical = canonical_json(body)
        if canonical is not None:
            return b"json:" + canonical
    elif media_type == "multipart/form-data" and body:
        # Clients pick a fresh boundary for every attempt, so the parts are compared instead.
        try:
            return b"multipart:" + _multipart_identity(request)
        except MultiPartParserError:
            pass  # DRF's parser will refuse it with a 400; the bytes identify it meanwhile.
    return b"raw:" + body


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith(_JSON_SUFFIX)


def canonical_json(body: bytes) -> bytes | None:
    """Equal JSON documents give equal bytes (key order, spacing and number spelling aside)."""
    try:
        document = json.loads(body, parse_float=Decimal, parse_int=Decimal)
        return _canonical(document).encode()
    except (ValueError, InvalidOperation, RecursionError):
        return None  # not JSON we can canonicalise: its bytes identify it


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_string(k)}:{_canonical(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Decimal):
        return _number(value)
    return json.dumps(value)  # True, False, None


def _string(value: str) -> str:
    # ASCII escapes: equal strings, equal bytes, and lone surrogates cannot break the encoding.
    return json.dumps(value)


def _number(value: Decimal) -> str:
    """Exact and cheap: 1, 1.0 and 10E-1 agree; 1e999999999 is never expanded to digits."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        return str(value)  # NaN or Infinity
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return "0"
    exponent += len(digits) - len(significant)
    return f"{'-' if sign else ''}{significant}e{exponent}"


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
