"""A minimal asyncio HTTP/1.1 client: one request per connection, as gunicorn's sync workers
serve them. Cheaper per request than ``requests`` by an order of magnitude, which matters
when the clients share two cores with the servers they load."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


class NoAnswer(Exception):
    """The connection failed, was reset or timed out before a whole answer arrived."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes
    #: The cookies the answer sets (``Set-Cookie`` may come several times), by name.
    cookies: dict[str, str] = field(default_factory=dict)


async def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes = b"",
    timeout: float,
) -> Answer:
    """Send one request to 127.0.0.1:``port`` and read the answer until the server closes."""
    try:
        return await asyncio.wait_for(_exchange(port, method, path, headers, body), timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        raise NoAnswer(type(exc).__name__) from exc


async def _exchange(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes
) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        parsed: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                parsed[name.strip().lower()] = value.strip()
                if name.strip().lower() == "set-cookie":
                    cookie, _, _ = value.strip().partition(";")
                    cookie_name, _, cookie_value = cookie.partition("=")
                    cookies[cookie_name] = cookie_value
        length = parsed.get("content-length")
        if length is not None:
            content = await reader.readexactly(int(length))
        else:
            content = await reader.read()
        return Answer(status=status, headers=parsed, body=content, cookies=cookies)
    finally:
        writer.close()
