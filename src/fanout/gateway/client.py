"""A lean client for the API Gateway ``@connections`` API: POST, GET and DELETE.

Keep-alive connections per endpoint (``http.HttpClient``), requests signed with SigV4
(``sigv4.Signer``), and answers mapped to the outcomes the API documents. It replaces botocore's
generic pipeline on the hot path.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import ipaddress
import json
import random
import re
from typing import Any
from urllib.parse import quote, urlsplit

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


def _is_local(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or host
    if name == "localhost" or name.endswith(".internal"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


#: What a connection record's ``domainName`` and ``stage`` may hold: they go into the request line.
_DOMAIN = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_STAGE = re.compile(r"[A-Za-z0-9_-]+")


class ManagementClient:
    """Posts frames to connections; one instance and one ``HttpClient`` per process."""

    def __init__(
        self,
        http: HttpClient,
        signer: Signer | None,
        *,
        endpoint_override: str | None = None,
    ) -> None:
        self._http = http
        self._signer = signer
        self._override = endpoint_override.rstrip("/") if endpoint_override else None
        self._bases: dict[tuple[str, str], tuple[Origin, str, str] | None] = {}

    def _base(self, conn: Connection) -> tuple[Origin, str, str] | None:
        """(origin, Host header, path prefix) for a connection's API, cached per endpoint.

        None when the record's domain name or stage cannot be a management API's.
        """
        key = (conn.domain_name, conn.stage)
        if key in self._bases:
            return self._bases[key]
        if self._override:
            url = urlsplit(self._override)
            netloc, prefix = url.netloc, url.path.rstrip("/")
        elif _DOMAIN.fullmatch(conn.domain_name) and _STAGE.fullmatch(conn.stage):
            url = urlsplit(f"{'http' if _is_local(conn.domain_name) else 'https'}://{conn.domain_name}")
            netloc, prefix = conn.domain_name, f"/{conn.stage}"
        else:
            log.warning("connection_endpoint_invalid", connection=conn.connection_id)
            self._bases[key] = None
            return None
        origin = self._http.origin(url.scheme, url.hostname or "", url.port)
        base = self._bases[key] = (origin, netloc, prefix)
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
