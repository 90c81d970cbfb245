"""The connection record: its shape, its bucket, and how the worker reads one. A record is written by the
lifecycle (or by the existing API); one with a missing field or a wrong type is skipped, never trusted."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Records carry ``bucket`` (a hash of the connection id): shards of a large audience are bucket ranges.
BUCKETS = 1024
# ``payloads`` is absent from nearly every record, so asking for it costs a lookup nothing.
PROJECTION = {
    "_id": 0, "connectionId": 1, "userId": 1, "domainName": 1, "stage": 1, "connectedAt": 1, "payloads": 1,
}  # fmt: skip
#: The payload versions a connection understands: event type -> versions (a type left out: version 1).
Payloads = dict[str, frozenset[int]]
#: Told of every malformed record a lookup skips.
SkipHook = Callable[[dict[str, Any]], None]
_V1 = frozenset({1})


@dataclass(frozen=True, slots=True)
class Connection:
    """One live WebSocket connection as the worker needs it."""

    connection_id: str
    user_id: str
    domain_name: str
    stage: str
    connected_at: datetime | None
    payloads: Payloads | None = None  # None: the client declared none, so it speaks version 1 of all

    def speaks(self, event_type: str, version: int) -> bool:
        """Whether the client understands ``version`` of ``event_type``'s payload."""
        if self.payloads is None:
            return version == 1
        return version in self.payloads.get(event_type, _V1)

    @property
    def endpoint(self) -> str:
        """The management-API endpoint key: ``{domainName}/{stage}``."""
        return f"{self.domain_name}/{self.stage}"


def now_utc() -> datetime:
    """Now, timezone-aware, as records store their times."""
    return datetime.now(UTC)


def live(doc: dict[str, Any], now: datetime) -> bool:
    """Whether the record's ``expiresAt`` is after ``now`` (False without one)."""
    expires = doc.get("expiresAt")
    if not isinstance(expires, datetime):
        return False
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) > now


def bucket_of(connection_id: str) -> int:
    """The record's bucket, ``0 <= b < BUCKETS``: a hash of its id, so ids of any shape spread evenly."""
    return zlib.crc32(connection_id.encode()) % BUCKETS


def payload_entries(payloads: dict[str, list[int]]) -> list[str]:
    """How a record stores declared payload versions: ``type@version`` strings (types hold dots, which
    MongoDB field names should not)."""
    return [f"{event_type}@{v}" for event_type, versions in payloads.items() for v in versions]


def _payloads(value: Any) -> Payloads | None:
    """The record's ``payloads`` as a lookup; entries that are not ``type@version`` are ignored, and so is
    a version no payload has (over 4 digits) or that only looks like digits (``str.isdigit`` takes a
    superscript two, which ``int`` refuses: that failed every lookup of the record's user)."""
    if not isinstance(value, list):
        return None
    found: dict[str, set[int]] = {}
    for entry in value:
        event_type, _, version = entry.rpartition("@") if isinstance(entry, str) else ("", "", "")
        if event_type and version.isascii() and version.isdigit() and len(version) <= 4:
            found.setdefault(event_type, set()).add(int(version))
    return {t: frozenset(v) for t, v in found.items()}


def to_connection(doc: dict[str, Any]) -> Connection | None:
    """The record as a ``Connection``; None when a field is missing or of the wrong type."""
    cid, user, domain, stage = (
        doc.get("connectionId"),
        doc.get("userId"),
        doc.get("domainName"),
        doc.get("stage"),
    )
    connected = doc.get("connectedAt")
    if not (isinstance(cid, str) and cid and isinstance(user, str) and user):
        return None
    if not (isinstance(domain, str) and isinstance(stage, str)):
        return None
    if connected is not None:
        if not isinstance(connected, datetime):
            return None
        if connected.tzinfo is None:
            connected = connected.replace(tzinfo=UTC)
    declared = doc.get("payloads")
    return Connection(cid, user, domain, stage, connected, None if declared is None else _payloads(declared))
