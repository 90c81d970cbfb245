"""``user.*``: presence."""

from __future__ import annotations

from typing import Literal

from fanout.catalog._base import Id, Payload, Timestamp, event


class UserPresenceUpdated(Payload):
    """A user came online, went away or offline; ``lastSeenAt`` for "last seen"."""

    user_id: Id
    status: Literal["online", "away", "offline"]
    last_seen_at: Timestamp | None = None


EVENTS = (event("user.presence.updated", UserPresenceUpdated, ordering=("userId",), priority="urgent"),)
