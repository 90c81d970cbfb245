"""The event catalog: known domains and types, and each type's delivery policy."""

from __future__ import annotations

from dataclasses import dataclass

DOMAINS: frozenset[str] = frozenset(
    {"notification", "chat", "follow", "event", "organization", "activity", "user", "system"}
)

#: Server events the product emits today or has planned (the adoption plan's contracts).
KNOWN_TYPES: frozenset[str] = frozenset(
    {
        "notification.new",
        "notification.read",
        "notification.unread.updated",
        "chat.message",
        "chat.read",
        "chat.conversation.updated",
        "chat.typing.started",
        "chat.typing.stopped",
        "chat.receipt.updated",
        "follow.request.created",
        "follow.request.updated",
        "event.rsvp.updated",
        "event.attendance.updated",
        "event.saved.updated",
        "organization.member.updated",
        "organization.announcement",
        "activity.feed.updated",
        "user.presence.updated",
        "system.heartbeat",
        "system.reconnect",
        "system.notice",
        "system.broadcast",
        "system.replay",
    }
)

#: The metric label for a type outside KNOWN_TYPES, so labels stay bounded.
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Policy:
    """How an event type is delivered: how long it stays worth delivering and how hard to try."""

    max_age_s: float
    rounds: int  # re-enqueue rounds for connections that still fail after in-event retries


DEFAULT_POLICY = Policy(max_age_s=24 * 3600, rounds=3)

# Longest matching prefix wins.
_POLICIES: dict[str, Policy] = {
    "chat.typing": Policy(max_age_s=5, rounds=0),
    "user.presence": Policy(max_age_s=60, rounds=1),
    "event.attendance": Policy(max_age_s=300, rounds=2),
    "system.heartbeat": Policy(max_age_s=30, rounds=0),
    "system.reconnect": Policy(max_age_s=60, rounds=1),
}


def domain_of(event_type: str) -> str:
    """The domain of ``notification.new`` is ``notification``."""
    return event_type.partition(".")[0]


def policy_for(event_type: str) -> Policy:
    """The delivery policy of an event type (longest configured prefix, else the default)."""
    parts = event_type.split(".")
    for end in range(len(parts), 0, -1):
        found = _POLICIES.get(".".join(parts[:end]))
        if found is not None:
            return found
    return DEFAULT_POLICY


def metric_label(event_type: str) -> str:
    """The ``event_type`` label for metrics: the type itself when catalogued, else ``other``."""
    return event_type if event_type in KNOWN_TYPES else OTHER
