"""The soak's fault-injecting proxy, against a real TCP echo server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from .proxy import FaultProxy, is_amqp_publish


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _through_proxy(test: Callable[[FaultProxy], Awaitable[None]]) -> None:
    async def main() -> None:
        upstream = await asyncio.start_server(_echo, "127.0.0.1", 0)
        proxy = FaultProxy("127.0.0.1", upstream.sockets[0].getsockname()[1], seed=1)
        await proxy.start()
        try:
            await asyncio.wait_for(test(proxy), 20)
        finally:
            await proxy.close()
            upstream.close()
            await upstream.wait_closed()

    asyncio.run(main())


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await reader.readexactly(len(data))


def test_forwards_every_byte_in_order() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        payload = bytes(range(256)) * 2000  # several chunks
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        writer.close()

    _through_proxy(test)


def test_latency_delays_each_direction() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        proxy.set_delay(latency=0.2)
        started = time.monotonic()
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        # A lower bound only: the way there and back are each delayed.
        assert time.monotonic() - started >= 0.4
        proxy.heal()
        writer.close()

    _through_proxy(test)


def test_stall_holds_bytes_until_resumed() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        proxy.stall()
        writer.write(b"held")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.3)
        proxy.resume()
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"held"
        writer.close()

    _through_proxy(test)


def test_reset_kills_the_connection_and_new_ones_work() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        assert proxy.reset(5) == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _round_trip(reader, writer, b"y")
        assert proxy.resets == 1
        reader, writer = await _connect(proxy)
        writer.write(b"z")
        assert await reader.readexactly(1) == b"z"
        writer.close()

    _through_proxy(test)


def test_reset_prefers_connections_in_the_middle_of_traffic() -> None:
    async def test(proxy: FaultProxy) -> None:
        idle = [await _connect(proxy) for _ in range(3)]
        for reader, writer in idle:
            writer.write(b"i")
            assert await reader.readexactly(1) == b"i"
        await asyncio.sleep(0.2)
        busy_reader, busy_writer = await _connect(proxy)
        busy_writer.write(b"b")
        assert await busy_reader.readexactly(1) == b"b"
        assert proxy.reset(1, active_within=0.1) == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await _round_trip(busy_reader, busy_writer, b"b")
        for reader, writer in idle:  # the idle ones were spared
            writer.write(b"i")
            assert await reader.readexactly(1) == b"i"
            writer.close()

    _through_proxy(test)


def test_cut_on_drops_the_matching_write_once_and_resets_its_connection() -> None:
    async def test(proxy: FaultProxy) -> None:
        reader, writer = await _connect(proxy)
        assert await _round_trip(reader, writer, b"before") == b"before"
        proxy.cut_on(lambda data: b"publish" in data)
        writer.write(b"publish")
        await writer.drain()  # the write itself succeeds
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await reader.readexactly(1)  # nothing came back: the upstream never saw it
        assert proxy.resets == 1
        reader, writer = await _connect(proxy)  # once only
        assert await _round_trip(reader, writer, b"publish") == b"publish"
        writer.close()

    _through_proxy(test)


def test_upstream_down_resets_the_client() -> None:
    async def main() -> None:
        proxy = FaultProxy("127.0.0.1", 1)  # nothing listens on port 1
        await proxy.start()
        try:
            reader, _writer = await _connect(proxy)
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionError:
            pass
        finally:
            await proxy.close()

    asyncio.run(main())


def _frame(kind: int, payload: bytes, channel: int = 1) -> bytes:
    return (
        bytes([kind])
        + channel.to_bytes(2, "big")
        + len(payload).to_bytes(4, "big")
        + (payload + b"\xce")
    )


def test_is_amqp_publish_finds_the_publish_method_among_the_frames_of_a_write() -> None:
    publish = _frame(1, b"\x00\x3c\x00\x28" + b"\x00\x00\x05queue\x00")
    header = _frame(2, b"\x00\x3c\x00\x00" + bytes(12))
    body = _frame(3, b'{"task": 1}')
    ack = _frame(1, b"\x00\x3c\x00\x50" + bytes(9))  # basic.ack, not a publish
    assert is_amqp_publish(publish + header + body)
    assert is_amqp_publish(ack + publish)
    assert not is_amqp_publish(ack)
    assert not is_amqp_publish(header + body)
    assert not is_amqp_publish(b"AMQP\x00\x00\x09\x01")  # the protocol header
