"""``system.*``: heartbeat, reconnect hints, operator notices, broadcasts, replays and revocations."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, StringConstraints

from fanout.catalog._base import TOPIC_PATTERN, Count, Id, Name, Payload, Text, Timestamp, Url, event

Severity = Literal["info", "warning", "critical"]

#: The type a product publishes when it takes topics away from users (docs/protocol.md section 8).
ACCESS_REVOKED = "system.access.revoked"
#: Topics one revocation names at most: what one connection may hold.
MAX_REVOKED_TOPICS = 100


def _not_own_user(topic: str) -> str:
    if topic.startswith("user:"):
        raise ValueError("a user: topic cannot be revoked (a user always follows its own)")
    return topic


RevocableTopic = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=TOPIC_PATTERN),
    AfterValidator(_not_own_user),
    Field(json_schema_extra={"not": {"pattern": "^user:"}}),
]


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


class SystemAccessRevoked(Payload):
    """The user may no longer follow these topics: the product removed them from an organization or a
    conversation. The worker has taken the topics off every connection of the user before this frame is
    posted; a client drops them from the topics it subscribes again on reconnect."""

    topics: list[RevocableTopic] = Field(min_length=1, max_length=MAX_REVOKED_TOPICS)


EVENTS = (
    event("system.heartbeat", SystemHeartbeat, priority="bulk"),
    event("system.reconnect", SystemReconnect),
    event("system.notice", SystemNotice),
    event("system.broadcast", SystemBroadcast, priority="bulk"),
    event("system.replay", SystemReplay),
    event(ACCESS_REVOKED, SystemAccessRevoked, users_only=True),
)
