"""Answers a server may send that a naive client misreads: interim 1xx, bytes nobody asked for, bodies
that end at the close, bodies over the cap. Each against a raw asyncio server that writes exact bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from fanout.gateway.http import MAX_BODY_BYTES, HttpClient, Origin, ProtocolError, frame

#: Writes the answer to the server's request ``n`` (0-based, over all connections); True reads another.
Script = Callable[[asyncio.StreamWriter, int], Awaitable[bool]]


class RawServer:
    """A TCP server that reads request heads and answers with the bytes ``script`` writes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                if not await self.script(writer, self.requests - 1):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client closed the connection
        finally:
            writer.close()


@asynccontextmanager
async def raw_serving(script: Script) -> AsyncIterator[RawServer]:
    server = RawServer(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


@asynccontextmanager
async def origin_of(server: RawServer, **kwargs: int) -> AsyncIterator[Origin]:
    http = HttpClient(timeout_s=5, **kwargs)
    try:
        yield http.origin("http", "127.0.0.1", server.port)
    finally:
        await http.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


REQUEST = frame("POST", "test", "/", body=b"{}")


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n",
    ],
)
async def test_interim_1xx_answers_are_skipped_until_the_final_answer(interim: bytes) -> None:
    """A 1xx is not the answer: the request waits for the final one, and the connection is kept."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(interim)
        await writer.drain()
        await asyncio.sleep(0.05)  # the interim arrives alone
        writer.write(ok(b"final %d" % n))
        return True

    async with raw_serving(script) as server, origin_of(server) as origin:
        assert (200, b"final 0") == await origin.request(REQUEST)
        assert (200, b"final 1") == await origin.request(REQUEST)
    assert 1 == server.connections


async def test_a_1xx_followed_by_the_close_is_a_connection_error() -> None:
    """A 100 Continue and then nothing is no success: the close before the final answer fails it."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return False

    async with raw_serving(script) as server, origin_of(server) as origin:
        with pytest.raises(ConnectionError):
            await origin.request(REQUEST)


async def test_a_101_switching_protocols_is_a_protocol_error() -> None:
    """An upgrade the client never asked for fails the request as unreadable."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nxyz")
        await asyncio.sleep(0.2)
        return False

    async with raw_serving(script) as server, origin_of(server) as origin:
        with pytest.raises(ProtocolError):
            await origin.request(REQUEST)


STALE = [ok(b"stale"), b"HTTP/1.1 200 OK\r\nContent-Le"]


@pytest.mark.parametrize("stale", STALE)
async def test_bytes_behind_an_answer_close_the_connection(stale: bytes) -> None:
    """Bytes written right behind an answer never answer the next request: it gets a new connection."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"answer %d" % n) + stale)
        return True

    async with raw_serving(script) as server, origin_of(server) as origin:
        assert (200, b"answer 0") == await origin.request(REQUEST)
        await asyncio.sleep(0.05)
        assert (200, b"answer 1") == await origin.request(REQUEST)
    assert 2 == server.connections


@pytest.mark.parametrize("stale", [*STALE, b"\r\n"])
async def test_bytes_that_arrive_between_requests_close_the_connection(stale: bytes) -> None:
    """Bytes that arrive while the connection is idle close it, so the next request does not read them."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"answer %d" % n))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(stale)
        return True

    async with raw_serving(script) as server, origin_of(server) as origin:
        assert (200, b"answer 0") == await origin.request(REQUEST)
        await asyncio.sleep(0.2)  # the stray bytes arrive meanwhile
        assert (200, b"answer 1") == await origin.request(REQUEST)
    assert 2 == server.connections


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    ],
)
async def test_a_body_without_length_ends_at_the_close_and_the_connection_is_not_reused(head: bytes) -> None:
    """A body with neither Content-Length nor chunks is read to the close, whole, on a fresh connection."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(head + b"hello ")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"world %d" % n)
        return False

    async with raw_serving(script) as server, origin_of(server) as origin:
        assert (200, b"hello world 0") == await origin.request(REQUEST)
        assert (200, b"hello world 1") == await origin.request(REQUEST)
    assert 2 == server.connections


@pytest.mark.parametrize(
    "cut",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
    ],
)
async def test_an_answer_cut_off_by_the_close_is_a_connection_error(cut: bytes) -> None:
    """A close before a sized or chunked body (or the head) is complete fails the request."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(cut)
        return False

    async with raw_serving(script) as server, origin_of(server) as origin:
        with pytest.raises(ConnectionError):
            await origin.request(REQUEST)


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    parts = (body[:half], body[half:])
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
        + b"0\r\n\r\n"
    )


def until_close(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n\r\n" + body


@pytest.mark.parametrize("framing", [ok, chunked, until_close], ids=["sized", "chunked", "until_close"])
async def test_a_body_over_the_cap_is_a_protocol_error_and_closes_the_connection(
    framing: Callable[[bytes], bytes],
) -> None:
    """A body one byte over ``max_body_bytes`` fails the request; a body at the cap is read whole."""
    cap = 4096

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(framing(b"x" * (cap + (n == 0))))
        await writer.drain()
        if framing is until_close:
            return False
        await asyncio.sleep(0.5)  # the client must not wait for this close to fail
        return True

    async with raw_serving(script) as server, origin_of(server, max_body_bytes=cap) as origin:
        async with asyncio.timeout(0.4):
            with pytest.raises(ProtocolError):
                await origin.request(REQUEST)
        assert (200, b"x" * cap) == await origin.request(REQUEST)
    assert 2 == server.connections


async def test_the_default_cap_refuses_a_large_body() -> None:
    """Without a cap given, a body over 64 KiB fails the request."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(ok(b"x" * (MAX_BODY_BYTES + 1)))
        await writer.drain()
        return True

    async with raw_serving(script) as server, origin_of(server) as origin:
        with pytest.raises(ProtocolError):
            await origin.request(REQUEST)
    assert 65536 == MAX_BODY_BYTES


async def test_endless_headers_are_a_protocol_error() -> None:
    """A head that never ends is cut off by the answer cap, well before the request's time budget."""

    async def script(writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(10_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
            await writer.drain()
        return False

    async with raw_serving(script) as server, origin_of(server, max_body_bytes=1024) as origin:
        async with asyncio.timeout(2):
            with pytest.raises(ProtocolError):
                await origin.request(REQUEST)
