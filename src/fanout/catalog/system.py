"""``system.*``: heartbeat, reconnect hints, operator notices, broadcasts and replays."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fanout.catalog._base import Count, Id, Name, Payload, Text, Timestamp, Url, event

Severity = Literal["info", "warning", "critical"]


class SystemHeartbeat(Payload):
    """The server is alive; nothing to do."""

    at: Timestamp | None = None


class SystemReconnect(Payload):
    """The client should close and reconnect (after ``afterMs``, with jitter)."""

    reason: Name | None = Field(default=None, description="e.g. maintenance, upgrade, rebalance")
    after_ms: Count | None = None


class SystemNotice(Payload):
    """An operator or moderation notice to show to the user."""

    notice_id: Id
    severity: Severity = "info"
    title: Text | None = None
    body: Text | None = None
    url: Url | None = None
    expires_at: Timestamp | None = None


class SystemBroadcast(Payload):
    """A message for everyone connected, e.g. planned maintenance."""

    broadcast_id: Id
    severity: Severity = "info"
    title: Text | None = None
    body: Text | None = None
    url: Url | None = None


class SystemReplay(Payload):
    """Internal: the lifecycle's ``resume`` asks the worker to post a connection's missed events.

    The event ids travel in the worker-owned ``fanout-replay`` attribute and the body targets the one
    connection; the worker posts the kept frames, never this body (docs/protocol.md section 21)."""


EVENTS = (
    event("system.heartbeat", SystemHeartbeat, priority="bulk"),
    event("system.reconnect", SystemReconnect),
    event("system.notice", SystemNotice),
    event("system.broadcast", SystemBroadcast, priority="bulk"),
    event("system.replay", SystemReplay),
)
