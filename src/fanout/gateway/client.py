"""A lean client for the API Gateway ``@connections`` API: POST, GET and DELETE.

Keep-alive connections per endpoint (``http.HttpClient``), requests signed with SigV4
(``sigv4.Signer``), and answers mapped to the outcomes the API documents. It replaces botocore's
generic pipeline on the hot path. Posts go only where ``endpoints.EndpointPolicy`` allows: a record
naming any other API is refused without a request (``Outcome.REJECTED``, one warning per endpoint).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import random
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from fanout.gateway.endpoints import EndpointPolicy, EndpointRefused
from fanout.gateway.http import HttpClient, Origin, ProtocolError, frame
from fanout.gateway.sigv4 import EMPTY_SHA256, Signer
from fanout.logging import get_logger
from fanout.store import Connection

log = get_logger("fanout.gateway")


class Outcome(enum.Enum):
    """What one ``@connections`` call came to; ``value`` is the metric label."""

    OK = "ok"
    GONE = "gone"  # 410 GoneException: the connection is closed
    THROTTLED = "throttled"  # 429 LimitExceededException
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # connection refused, DNS, reset
    FORBIDDEN = "forbidden"  # 403: wrong endpoint, stage or permissions
    TOO_LARGE = "too_large"  # 413 PayloadTooLargeException
    REJECTED = "rejected"  # any other 4xx, or a record whose endpoint is refused without a request
    EXPIRED = "expired"  # not posted: the event expired while the post waited for a lane
    UNSUPPORTED_VERSION = "unsupported_version"  # not posted: the client does not speak its payload version

    # Members are singletons compared by identity, so identity hashes them too: ``Enum.__hash__`` is a
    # Python call, made twice for every count of an outcome on the hot path.
    __hash__ = object.__hash__

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset({Outcome.THROTTLED, Outcome.SERVER_ERROR, Outcome.TIMEOUT, Outcome.UNREACHABLE})


def outcome_of(status: int) -> Outcome:
    """Map an HTTP status of the management API to an outcome."""
    if status < 300:
        return Outcome.OK
    if status == 410:
        return Outcome.GONE
    if status == 429:
        return Outcome.THROTTLED
    if status == 403:
        return Outcome.FORBIDDEN
    if status == 413:
        return Outcome.TOO_LARGE
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.REJECTED


#: Endpoints remembered per client: far more than a deployment has, few enough that garbage records
#: cannot grow memory or the log without bound (past it, a refusal is decided again and not logged).
MAX_ENDPOINTS = 1024
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


class ManagementClient:
    """Posts frames to connections; one instance and one ``HttpClient`` per process.

    ``region``, ``dev``, ``api_ids`` and ``endpoint_override`` decide where posts may go
    (``endpoints.EndpointPolicy``); without ``dev`` only execute-api hosts of ``region`` are allowed.
    """

    def __init__(
        self,
        http: HttpClient,
        signer: Signer | None,
        *,
        region: str,
        dev: bool = False,
        api_ids: Iterable[str] = (),
        endpoint_override: str | None = None,
    ) -> None:
        self._http = http
        self._signer = signer
        self._policy = EndpointPolicy(region=region, dev=dev, api_ids=api_ids, override=endpoint_override)
        self._bases: dict[tuple[str, str], tuple[Origin, str, str] | None] = {}

    def _base(self, conn: Connection) -> tuple[Origin, str, str] | None:
        """(origin, Host header, path prefix) for a connection's API, cached per endpoint.

        None when posts may not go to the API the record names.
        """
        key = (conn.domain_name, conn.stage)
        try:
            return self._bases[key]
        except KeyError:
            pass
        base: tuple[Origin, str, str] | None
        remember = len(self._bases) < MAX_ENDPOINTS
        try:
            endpoint = self._policy.resolve(conn.domain_name, conn.stage)
        except EndpointRefused as exc:
            base = None
            if remember:  # the endpoint only: a record's id and user say nothing about where it points
                endpoint_name = _UNPRINTABLE.sub("?", conn.endpoint[:300])
                log.warning("connection_endpoint_refused", endpoint=endpoint_name, reason=exc.reason)
        else:
            origin = self._http.origin(endpoint.scheme, endpoint.host, endpoint.port)
            base = (origin, endpoint.netloc, endpoint.prefix)
        if remember:
            self._bases[key] = base
        return base

    async def _call(
        self, method: str, conn: Connection, data: bytes = b"", data_sha256: str = EMPTY_SHA256
    ) -> tuple[Outcome, bytes]:
        base = self._base(conn)
        if base is None:
            return Outcome.REJECTED, b""
        origin, host, prefix = base
        path = f"{prefix}/@connections/{quote(conn.connection_id, safe='')}"
        headers = self._signer.sign(method, host, path, data_sha256) if self._signer else []
        if data:
            headers.append(("Content-Type", "application/octet-stream"))
        try:
            status, body = await origin.request(frame(method, host, path, headers, data))
        except TimeoutError:
            return Outcome.TIMEOUT, b""
        except OSError:
            return Outcome.UNREACHABLE, b""
        except ProtocolError:
            return Outcome.SERVER_ERROR, b""
        return outcome_of(status), body

    async def post(self, conn: Connection, data: bytes, data_sha256: str | None = None) -> Outcome:
        """Send ``data`` as one text frame; pass ``data_sha256`` when posting one body many times."""
        digest = data_sha256 or hashlib.sha256(data).hexdigest()
        outcome, _ = await self._call("POST", conn, data, digest)
        return outcome

    async def get(self, conn: Connection) -> tuple[Outcome, dict[str, Any] | None]:
        """``connectedAt``, ``lastActiveAt`` and ``identity`` of an open connection."""
        outcome, body = await self._call("GET", conn)
        if outcome is not Outcome.OK:
            return outcome, None
        return outcome, json.loads(body)

    async def delete(self, conn: Connection) -> Outcome:
        """Close a connection from the server side."""
        outcome, _ = await self._call("DELETE", conn)
        return outcome


async def sleep_backoff(attempt: int, base_s: float = 0.05, cap_s: float = 2.0) -> None:
    """Exponential backoff with full jitter."""
    await asyncio.sleep(random.uniform(0, min(cap_s, base_s * 2**attempt)))
