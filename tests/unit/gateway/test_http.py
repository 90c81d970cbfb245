"""The hot path's HTTP/1.1 client against real servers on real sockets: reuse, closes, timeouts, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
import trustme
from aiohttp import web

from fanout.gateway.client import ManagementClient, Outcome
from fanout.gateway.http import HttpClient, ProtocolError, frame
from fanout.store import Connection
from tests.helpers import wait_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp server that records each request's client port (one per TCP connection)."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.ports: list[int] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.ports.append(request.transport.get_extra_info("peername")[1])
        self.requests.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(body=b"answer to " + request.path_qs.encode())


@asynccontextmanager
async def serving(
    server: Server, *, keepalive_timeout: float = 75.0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def request(path: str, body: bytes = b"") -> bytes:
    return frame("POST", "test", path, body=body)


def answer_after(seconds: float, only: str | None = None) -> Handler:
    """A handler answering with the request's path, after ``seconds`` (for the path ``only``, if given)."""

    async def handle(request: web.Request) -> web.Response:
        if only is None or request.path == only:
            await asyncio.sleep(seconds)
        return web.Response(text=request.path)

    return handle


async def test_one_connection_carries_sequential_requests_and_each_gets_its_own_answer() -> None:
    """One connection carries sequential requests and each gets its own answer."""
    http = HttpClient(timeout_s=5)
    async with serving(Server()) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        answers = [await origin.request(request(f"/r{i}", b"x" * i)) for i in range(20)]
        await http.close()
    assert answers == [(200, f"answer to /r{i}".encode()) for i in range(20)]
    assert len(set(server.ports)) == 1
    assert [len(r[3]) for r in server.requests] == list(range(20))


async def test_concurrent_requests_open_one_connection_each_and_reuse_them() -> None:
    """Concurrent requests open one connection each and reuse them."""
    http = HttpClient(timeout_s=5)
    async with serving(Server(answer_after(0.05))) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        for _ in range(3):
            answers = await asyncio.gather(*(origin.request(request("/")) for _ in range(8)))
            assert answers == [(200, b"/")] * 8
        await http.close()
    assert len(set(server.ports)) == 8


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    """A connection the server closes is not reused."""

    async def close_after(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    http = HttpClient(timeout_s=5)
    async with serving(Server(close_after)) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        assert [await origin.request(request("/")) for _ in range(3)] == [(200, b"bye")] * 3
        await http.close()
    assert len(set(server.ports)) == 3


async def test_an_idle_connection_closed_by_the_server_is_replaced() -> None:
    """An idle connection closed by the server is replaced."""
    http = HttpClient(timeout_s=5)
    async with serving(Server(), keepalive_timeout=0.1) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        assert (await origin.request(request("/a")))[0] == 200
        await asyncio.sleep(0.5)  # the server closes the idle connection meanwhile
        assert await origin.request(request("/b")) == (200, b"answer to /b")
        await http.close()
    assert len(set(server.ports)) == 2


async def test_a_timed_out_request_leaves_no_late_answer_for_the_next() -> None:
    """A timed out request leaves no late answer for the next."""
    http = HttpClient(timeout_s=0.2)
    async with serving(Server(answer_after(0.5, only="/slow"))) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        with pytest.raises(TimeoutError):
            await origin.request(request("/slow"))
        assert await origin.request(request("/next")) == (200, b"/next")
        await asyncio.sleep(0.4)  # the slow answer would have arrived by now
        assert await origin.request(request("/last")) == (200, b"/last")
        await http.close()
    assert len(set(server.ports)) == 2


async def test_a_cancelled_request_closes_its_connection() -> None:
    """A cancelled request closes its connection."""
    http = HttpClient(timeout_s=5)
    async with serving(Server(answer_after(0.3, only="/slow"))) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        task = asyncio.create_task(origin.request(request("/slow")))
        await wait_for(lambda: bool(server.ports))  # the request is in, its answer 0.3 s away
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await origin.request(request("/next")) == (200, b"/next")
        await http.close()
    assert len(set(server.ports)) == 2


async def test_a_chunked_answer_is_read_whole() -> None:
    """A chunked answer is read whole."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one ", b"two ", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    http = HttpClient(timeout_s=5)
    async with serving(Server(chunked)) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        assert await origin.request(request("/")) == (200, b"one two three")
        assert await origin.request(request("/")) == (200, b"one two three")
        await http.close()
    assert len(set(server.ports)) == 1


async def raw_server(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await answer(writer)
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_an_unreadable_answer_is_a_protocol_error() -> None:
    """An unreadable answer is a protocol error."""

    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO THERE\r\n\r\n")
        await writer.drain()

    server = await raw_server(garbage)
    async with server:
        http = HttpClient(timeout_s=5)
        with pytest.raises(ProtocolError):
            await http.origin("http", "127.0.0.1", server.sockets[0].getsockname()[1]).request(request("/"))
        await http.close()


async def test_a_close_before_the_answer_is_a_connection_error() -> None:
    """A close before the answer is a connection error."""

    async def nothing(writer: asyncio.StreamWriter) -> None:
        return None

    server = await raw_server(nothing)
    async with server:
        http = HttpClient(timeout_s=5)
        with pytest.raises(ConnectionError):
            await http.origin("http", "127.0.0.1", server.sockets[0].getsockname()[1]).request(request("/"))
        await http.close()


async def test_a_refused_connection_is_an_os_error(unused_tcp_port: int) -> None:
    """A refused connection is an OS error."""
    http = HttpClient(timeout_s=5)
    with pytest.raises(ConnectionRefusedError):
        await http.origin("http", "127.0.0.1", unused_tcp_port).request(request("/"))
    await http.close()


async def test_tls_verifies_the_server_certificate() -> None:
    """Tls verifies the server certificate."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with serving(Server(), ssl_context=server_context) as server:
        http = HttpClient(timeout_s=5, ssl_context=trusting)
        origin = http.origin("https", "127.0.0.1", server.port)
        assert [await origin.request(request(f"/{i}")) for i in range(3)] == [
            (200, f"answer to /{i}".encode()) for i in range(3)
        ]
        await http.close()
        untrusting = HttpClient(timeout_s=5)  # the system's CAs: not this test CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.origin("https", "127.0.0.1", server.port).request(request("/"))
        await untrusting.close()
    assert len(set(server.ports)) == 1


def connection(domain: str, stage: str = "prod") -> Connection:
    return Connection(
        connection_id="abc=",
        user_id="u1",
        domain_name=domain,
        stage=stage,
        connected_at=datetime.now(UTC),
    )


async def test_the_management_client_frames_a_post_as_api_gateway_expects() -> None:
    """The management client frames a post as api gateway expects."""
    http = HttpClient(timeout_s=5)
    async with serving(Server()) as server:
        client = ManagementClient(http, None, region="us-east-1", dev=True)
        assert await client.post(connection(f"127.0.0.1:{server.port}"), b'{"a":1}') is Outcome.OK
        await http.close()
    method, path, headers, body = server.requests[0]
    assert (method, path, body) == ("POST", "/prod/@connections/abc%3D", b'{"a":1}')
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["Content-Length"] == "7"


@pytest.mark.parametrize(
    ("domain", "stage"),
    [("evil.example\r\nX-Injected: 1", "prod"), ("api.example.com/../x", "prod"), ("127.0.0.1", "prod\r\n")],
)
async def test_a_record_whose_endpoint_cannot_be_a_host_is_rejected_without_a_request(
    domain: str, stage: str
) -> None:
    """A record whose endpoint cannot be a host is rejected without a request."""
    http = HttpClient(timeout_s=5)
    client = ManagementClient(http, None, region="us-east-1", dev=True)
    assert await client.post(connection(domain, stage), b"{}") is Outcome.REJECTED
    assert http._origins == {}
    await http.close()


async def test_a_request_that_ends_after_close_does_not_keep_its_connection() -> None:
    """A request that ends after close does not keep its connection."""
    http = HttpClient(timeout_s=5)
    async with serving(Server(answer_after(0.2))) as server:
        origin = http.origin("http", "127.0.0.1", server.port)
        task = asyncio.create_task(origin.request(request("/")))
        await asyncio.sleep(0.05)
        await http.close()
        assert await task == (200, b"/")
        assert not origin._idle
