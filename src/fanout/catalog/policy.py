"""Delivery policies: how long an event stays worth delivering, how hard to try, in which order, how soon.

Maximum age and rounds come from the longest matching type prefix (docs/protocol.md section 3), for
catalogued and uncatalogued types alike; ordering and priority are declared per catalogued type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DOMAINS: frozenset[str] = frozenset(
    {"notification", "chat", "follow", "event", "organization", "activity", "user", "system"}
)

#: ``urgent``: typing, presence, receipts; ``normal``; ``bulk``: broadcasts and counters.
Priority = Literal["urgent", "normal", "bulk"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "normal", "bulk")


@dataclass(frozen=True, slots=True)
class Policy:
    """How an event type is delivered: how long it stays worth delivering and how hard to try."""

    max_age_s: float
    rounds: int  # re-enqueue rounds for connections that still fail after in-event retries
    ordering: tuple[str, ...] = ()  # payload fields (wire names) whose values form meta.orderingKey
    priority: Priority = "normal"

    @property
    def latest_only(self) -> bool:
        """A key's events of this type are values of which only the latest matters (a live counter): the
        worker conflates them, so their ``seq`` may skip, and clients and resumes take the newest."""
        return self.priority == "bulk"


DEFAULT_POLICY = Policy(max_age_s=24 * 3600, rounds=3)

#: Maximum age and rounds by type prefix; the longest matching prefix wins.
PREFIX_POLICIES: dict[str, Policy] = {
    "chat.typing": Policy(max_age_s=5, rounds=0),
    "user.presence": Policy(max_age_s=60, rounds=1),
    "event.attendance": Policy(max_age_s=300, rounds=2),
    "system.heartbeat": Policy(max_age_s=30, rounds=0),
    "system.reconnect": Policy(max_age_s=60, rounds=1),
}


def domain_of(event_type: str) -> str:
    """The domain of ``notification.new`` is ``notification``."""
    return event_type.partition(".")[0]


def prefix_policy(event_type: str) -> Policy:
    """The policy of the longest configured prefix of ``event_type``, else the default."""
    parts = event_type.split(".")
    for end in range(len(parts), 0, -1):
        found = PREFIX_POLICIES.get(".".join(parts[:end]))
        if found is not None:
            return found
    return DEFAULT_POLICY
