"""A small HTTP/1.1 client for the management API's hot path: keep-alive connections per origin.

The ``@connections`` calls need little of a general HTTP client: no redirects, cookies, proxies,
compression or streaming, one request at a time per connection, and answers with a ``Content-Length``.
What they do need is cheap: on the bench machine, one 1 KiB POST at 64 in flight cost about 150 us of
CPU through aiohttp's request path, 180 us through aiosonic, and about 50 us through this client
(asyncio's transports and httptools' C parser, which uvicorn uses too).

Errors: ``TimeoutError`` when the whole request (connect included) outlasts its budget, ``OSError`` for
the socket and TLS (refused, reset, closed before the answer), ``ProtocolError`` for an unreadable
answer. A connection is reused only after a complete answer that allows keep-alive.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable

import httptools

#: Close keep-alive connections unused for this long, before the server closes them under a request.
IDLE_S = 15.0


def frame(
    method: str, host: str, path: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    """One request as bytes: the request line, ``Host``, ``headers``, and a body with its length.

    ``path`` must already be percent-encoded; nothing here may carry a CR or LF.
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{name}: {value}" for name, value in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ProtocolError(Exception):
    """The server's answer was not HTTP/1.1 this client can read."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; at most one request in flight on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.open = True
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(ProtocolError(f"unreadable answer: {exc}"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        answer = self.parser.get_status_code(), b"".join(self.chunks)
        self.chunks.clear()
        waiter, self.waiter = self.waiter, None
        if waiter is None or not self.parser.should_keep_alive():
            self.close()  # an answer nobody asked for leaves the connection untrustworthy
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.fail(exc or ConnectionResetError("the server closed the connection before answering"))

    def fail(self, exc: BaseException) -> None:
        """End the request in flight, if any, with ``exc``, and the connection with it."""
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


class Origin:
    """Keep-alive connections to one ``scheme://host:port``; requests are already framed bytes."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._idle: deque[_Connection] = deque()
        self._closed = False

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one framed request and return ``(status, body)``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        conn = self._reuse(loop.time())
        if conn is None:
            conn = await self._connect(deadline)
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        conn.waiter = waiter
        timer = loop.call_at(deadline, conn.fail, TimeoutError())
        try:
            assert conn.transport is not None
            conn.transport.write(data)
            answer = await waiter
        except BaseException:
            conn.close()  # a request cut off mid-way leaves its answer on the wire
            raise
        finally:
            timer.cancel()
        if conn.open and not self._closed:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _reuse(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle and now - idle[0].idle_since > IDLE_S:  # the oldest sit at the left
            idle.popleft().close()
        while idle:
            conn = idle.pop()  # the most recently used: its socket is the likeliest still open
            if conn.open:
                return conn
        return None

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(deadline):
            _, conn = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        return conn

    def close(self) -> None:
        """Close the idle connections now, and the busy ones when their requests end."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()


class HttpClient:
    """The origins one process talks to, with one request budget and one TLS context."""

    def __init__(self, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None) -> None:
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._origins: dict[tuple[str, str, int], Origin] = {}

    def origin(self, scheme: str, host: str, port: int | None = None) -> Origin:
        """The pool for ``scheme://host:port`` (``http`` or ``https``), created on first use."""
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r}")
        port = port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            context = None
            if scheme == "https":
                context = self._ssl_context = self._ssl_context or ssl.create_default_context()
            origin = self._origins[key] = Origin(host, port, context, self._timeout_s)
        return origin

    async def close(self) -> None:
        """Close every connection: idle ones now, busy ones when their requests end."""
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks
