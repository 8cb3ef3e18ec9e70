"""A small fault-injecting TCP proxy on loopback, for the soak (the kernel here has no netem).

It forwards bytes both ways between its clients and one upstream (PostgreSQL, PgBouncer) and,
on command, delays every chunk (latency plus jitter), stalls all traffic until resumed, resets
live connections (an RST, not a polite FIN, so the peer sees the link die mid-query), or cuts
the link that writes a chosen chunk (the write succeeded for the client, its peer never saw it).
Order within a direction is kept: one pump per direction forwards chunk after chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CHUNK = 65536


#: An AMQP 0-9-1 ``basic.publish`` method: class 60, method 40.
_BASIC_PUBLISH = b"\x00\x3c\x00\x28"


def is_amqp_publish(chunk: bytes) -> bool:
    """Whether ``chunk`` (a client's write, which py-amqp starts on a frame) holds a
    ``basic.publish`` method frame: a ``match`` for ``cut_on`` on a broker's proxy."""
    offset = 0
    while offset + 11 <= len(chunk):
        size = int.from_bytes(chunk[offset + 3 : offset + 7], "big")
        if chunk[offset] == 1 and chunk[offset + 7 : offset + 11] == _BASIC_PUBLISH:
            return True
        offset += 8 + size  # type, channel, size, payload, frame end
    return False


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    last_activity: float = field(default_factory=time.monotonic)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends RST and drops unsent data."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """``await proxy.start()``, then point clients at ``proxy.port``; faults on command."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.jitter = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._rng = random.Random(seed)
        self.port = 0
        #: Connections accepted, and connections reset on command.
        self.accepted = 0
        self.resets = 0
        self._cut_on: Callable[[bytes], bool] | None = None

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
            for task in link.tasks:
                task.cancel()
        self._links.clear()
        await asyncio.sleep(0.1)  # let the pumps and their handlers see the end
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # -- faults ------------------------------------------------------------------------------

    def set_delay(self, latency: float = 0.0, jitter: float = 0.0) -> None:
        """Delay each chunk by ``latency`` plus a uniform ``[0, jitter)`` seconds."""
        self.latency, self.jitter = latency, jitter

    def stall(self) -> None:
        """Stop forwarding (connections stay open, bytes wait) until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def heal(self) -> None:
        self.set_delay()
        self.resume()

    def reset(self, count: int, *, active_within: float = 0.05) -> int:
        """RST up to ``count`` connections, those with traffic in the last ``active_within``
        seconds first (mid-query, mid-transaction), then any others. Returns how many."""
        now = time.monotonic()
        links = sorted(self._links, key=lambda link: id(link))
        self._rng.shuffle(links)
        links.sort(key=lambda link: now - link.last_activity > active_within)
        chosen = links[:count]
        for link in chosen:
            link.abort()
            self._links.discard(link)
        self.resets += len(chosen)
        return len(chosen)

    def cut_on(self, match: Callable[[bytes], bool]) -> None:
        """Once: the first chunk a client sends for which ``match`` is true is dropped and its
        connection reset. The client's write succeeded; the upstream never received it."""
        self._cut_on = match

    def cancel_cut(self) -> None:
        """Disarm a ``cut_on`` that has not met its chunk."""
        self._cut_on = None

    @property
    def cut_pending(self) -> bool:
        """Whether a ``cut_on`` is armed and has not met its chunk yet."""
        return self._cut_on is not None

    def _cuts(self, data: bytes, upstream_bound: bool) -> bool:
        if not upstream_bound or self._cut_on is None or not self._cut_on(data):
            return False
        self._cut_on = None
        self.resets += 1
        return True

    @property
    def connections(self) -> int:
        return len(self._links)

    # -- forwarding --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            _reset(writer)  # upstream down: the client sees a refused-like reset
            return
        link = _Link(client=writer, upstream=up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, upstream_bound=True)),
            asyncio.create_task(self._pump(up_reader, writer, link, upstream_bound=False)),
        ]
        with contextlib.suppress(asyncio.CancelledError):  # the proxy is closing: end quietly
            await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for end in (writer, up_writer):
            with contextlib.suppress(Exception):
                end.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream_bound: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                link.last_activity = time.monotonic()
                if self._cuts(data, upstream_bound):
                    link.abort()
                    self._links.discard(link)
                    break
                delay = self.latency + (self._rng.random() * self.jitter if self.jitter else 0.0)
                if delay:
                    await asyncio.sleep(delay)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other too, so neither waits forever on a dead link.
            current = asyncio.current_task()
            for task in link.tasks:
                if task is not current:
                    task.cancel()
            with contextlib.suppress(Exception):
                writer.close()
