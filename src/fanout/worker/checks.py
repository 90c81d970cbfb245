"""Messages that waited on purpose, confirmed before they are posted (``fanout-check``).

- ``typing:<token>``: a scheduled ``chat.typing.stopped``. Posted only if the token is still the one
  stored for the conversation and user: a newer ``started`` or an explicit ``stopped`` supersedes it.
- ``presence``: a user's last connection closed a grace period ago (or the census saw it lapse): the
  ``user.presence.updated`` offline to the audience resolved when it was written. Posted only if the user
  is still gone and no connect raced the check (``live/presence.py``).

A check that no longer holds ends as ``superseded``. Each is confirmed once per message: a message received
again (its first receive failed after confirming) confirms again, so it is still posted at least once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from fanout import attributes, hooks, queues
from fanout.config import Settings
from fanout.envelope import QueueBody
from fanout.live import events, indicators, presence
from fanout.live.audience import PresenceAudience
from fanout.live.indicators import TypingStore
from fanout.live.presence import PresenceStore
from fanout.logging import get_logger

log = get_logger("fanout.worker")


def _when(value: Any) -> datetime:
    """A payload's ``lastSeenAt`` in UTC, or now when it is absent or not a time MongoDB can store."""
    try:
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
        # In UTC it must stay within years 1-9999: 0001-01-01T00:00:00+00:01 would fail every write.
        return at.astimezone(UTC) if at is not None and at.tzinfo is not None else datetime.now(UTC)
    except (ValueError, OverflowError):
        return datetime.now(UTC)


class Checks:
    """Confirms check messages, and queues presence checks for the census."""

    def __init__(
        self,
        typing: TypingStore,
        presence: PresenceStore,
        audience: PresenceAudience,
        sqs: Any,
        queue_url: str,
    ) -> None:
        self._typing, self._presence, self._audience = typing, presence, audience
        self._sqs = sqs
        self._queue = queue_url

    @classmethod
    def build(cls, db: AsyncDatabase[dict[str, Any]], settings: Settings, sqs: Any, queue_url: str) -> Checks:
        """The worker's checks; of the product's functions only ``FANOUT_PRESENCE_AUDIENCE`` is loaded here
        (the census resolves the audience of a user whose record lapsed)."""
        s = settings
        hook = hooks.load(s.presence_audience, "FANOUT_PRESENCE_AUDIENCE")
        return cls(
            TypingStore(db[indicators.COLLECTION]),
            PresenceStore(db[presence.COLLECTION], db[s.connections_collection]),
            PresenceAudience(db[s.conversations_collection], s.participants_field, hook),
            sqs,
            queue_url,
        )

    async def confirm(self, body: QueueBody, check: str) -> bool:
        """Whether a check message still holds, so its event is to be posted."""
        kind, _, token = check.partition(":")
        user = str(body.payload["userId"])
        if kind == "typing":
            return await self._typing.settle(str(body.payload["conversationId"]), user, token)
        return await self._presence.offline(user, _when(body.payload.get("lastSeenAt")), body.id)

    async def lapsed(self, users: dict[str, datetime]) -> None:
        """The census saw these users' records lapse: queue a presence check for each still marked online
        (the check itself confirms that no other record of theirs is live)."""
        bodies: list[QueueBody] = []
        for user in await self._presence.marked_online(sorted(users)):
            bodies.append(events.offline(user, users[user], await self._audience.of(user)))
        check = attributes.check("presence")
        for start in range(0, len(bodies), 10):
            entries = [
                {"Id": str(i), "MessageBody": body.to_json(), "MessageAttributes": check}
                | queues.fifo_fields(self._queue, body.id, body.id)  # a group of its own on a FIFO queue
                for i, body in enumerate(bodies[start : start + 10])
            ]
            await self._sqs.send_message_batch(QueueUrl=self._queue, Entries=entries)
        if bodies:
            log.info("presence_lapsed", users=len(bodies))
