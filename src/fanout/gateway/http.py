"""A small HTTP/1.1 client for the management API's hot path: keep-alive connections per origin.

The ``@connections`` calls need little of a general HTTP client: no redirects, cookies, proxies,
compression or streaming, one request at a time per connection, and small answers (a ``Content-Length``,
chunks, or a body that ends at the server's close; ``1xx`` interim answers are skipped).
What they do need is cheap: on the bench machine, one 1 KiB POST at 64 in flight cost about 150 us of
CPU through aiohttp's request path, 180 us through aiosonic, and about 50 us through this client
(asyncio's transports and httptools' C parser, which uvicorn uses too).

Errors: ``TimeoutError`` when the whole request (connect included) outlasts its budget, ``OSError`` for
the socket and TLS (refused, reset, closed before the answer), ``ProtocolError`` for an unreadable
answer or one whose body is over the cap (``max_body_bytes``). A connection is reused only after a
complete answer that allows keep-alive; bytes that arrive while no request waits close it, so they can
never pass for the next request's answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Iterable

import httptools

#: Close keep-alive connections unused for this long, before the server closes them under a request.
IDLE_S = 15.0
#: Default cap of an answer's body: the management API answers a few hundred bytes at most.
MAX_BODY_BYTES = 64 * 1024
#: What an answer may carry besides its body (status lines, headers, chunk framing).
MAX_HEAD_BYTES = 16 * 1024


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
    """The server's answer was not HTTP/1.1 this client can read, or was over the size cap."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; at most one request in flight on it."""

    def __init__(self, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.body_bytes = 0
        self.max_body_bytes = max_body_bytes
        self.max_answer_bytes = max_body_bytes + MAX_HEAD_BYTES
        self.received: list[bytes] = []  # the answer's bytes so far, read again only if it ends at a close
        self.received_bytes = 0
        self.open = True
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: bytes that could pass for the next request's answer
            self.close()
            return
        self.received.append(data)
        self.received_bytes += len(data)
        if self.received_bytes > self.max_answer_bytes:
            self.fail(ProtocolError(f"answer over {self.max_answer_bytes} bytes"))
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.fail(ProtocolError(f"unreadable answer: {exc!r}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.waiter is None:  # more bytes behind a complete answer
            self.close()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.max_body_bytes:
            self.fail(ProtocolError(f"answer body over {self.max_body_bytes} bytes"))
        else:
            self.chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 and status != 101:  # 100 Continue, 103 Early Hints: the final answer follows
            return
        self.complete(status, self.parser.should_keep_alive())

    def complete(self, status: int, keep_alive: bool) -> None:
        """Hand the answer to the request waiting for it; close the connection unless it may carry more."""
        answer = status, b"".join(self.chunks)
        self.chunks.clear()
        self.received.clear()
        self.body_bytes = self.received_bytes = 0
        waiter, self.waiter = self.waiter, None
        if waiter is None or not keep_alive or status == 101:
            self.close()
        if waiter is not None and not waiter.done():
            if status == 101:  # never asked for: the connection now speaks another protocol
                waiter.set_exception(ProtocolError("unexpected 101 Switching Protocols"))
            else:
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        # A body without Content-Length or chunked framing ends at the server's close (RFC 9112 6.3).
        if self.open and exc is None and self.waiter is not None and _ends_at_close(b"".join(self.received)):
            self.complete(self.parser.get_status_code(), keep_alive=False)
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


class _Framing:
    """httptools callbacks that note how the last answer in some bytes delimits its body."""

    def __init__(self) -> None:
        self.head_done = self.message_done = self.sized = False

    def on_message_begin(self) -> None:
        self.head_done = self.message_done = self.sized = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
            self.sized = True

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.message_done = True


def _ends_at_close(data: bytes) -> bool:
    """Whether ``data``, cut off by the server's close, is an answer whose body the close ends.

    Read again apart only when a connection closes mid-answer, so the hot path pays nothing for
    header callbacks.
    """
    framing = _Framing()
    try:
        httptools.HttpResponseParser(framing).feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return False
    return framing.head_done and not framing.message_done and not framing.sized


class Origin:
    """Keep-alive connections to one ``scheme://host:port``; requests are already framed bytes."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        timeout_s: float,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._max_body_bytes = max_body_bytes
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
                lambda: _Connection(self._max_body_bytes),
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
    """The origins one process talks to, with one request budget, one body cap and one TLS context."""

    def __init__(
        self,
        *,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._max_body_bytes = max_body_bytes
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
            origin = self._origins[key] = Origin(host, port, context, self._timeout_s, self._max_body_bytes)
        return origin

    async def close(self) -> None:
        """Close every connection: idle ones now, busy ones when their requests end."""
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
        await asyncio.sleep(0)  # let the transports run their connection_lost callbacks
