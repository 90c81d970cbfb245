"""One active relay per outbox: a lease document ``{_id, owner, expiresAt}`` in MongoDB.

A relay takes the lease when it is free or expired, renews it every third of its lifetime, and sends
only while it believes it holds it: until two thirds of the lifetime after its last renewal began. A
call to SQS still under way then is cut off (``Relay._send``): its entries stay pending.
Another relay takes over only once ``expiresAt`` has passed, so the last third is the margin for clock
skew between hosts and for a relay paused mid-call; a corrupt lease (``expiresAt`` no date, or further ahead
than any relay renews it) is taken over at once, as it would never lapse. Times are the relays' own
clocks (UTC): keep them synchronised (NTP; ECS tasks have Amazon Time Sync). Should a paused relay still
send after that, the events go twice with the same ids, which clients drop.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fanout.logging import get_logger

log = get_logger("fanout.relay")

#: The longest lease a relay takes (``FANOUT_RELAY_LEASE_S``'s bound): one ending further ahead than twice
#: that was written by no relay, and would never lapse.
MAX_TTL_S = 300


class Lease:
    """The lease named ``name`` in ``collection``, as seen by ``owner``."""

    def __init__(self, collection: AsyncCollection[Any], name: str, owner: str, ttl_s: float) -> None:
        self._col = collection
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.held = False
        self._valid_until = 0.0  # monotonic
        self._renew_at = 0.0

    def valid(self) -> bool:
        """Whether this relay may send now."""
        return time.monotonic() < self._valid_until

    def left_s(self) -> float:
        """Seconds this relay may still send for: a call to SQS must end within them."""
        return max(0.0, self._valid_until - time.monotonic())

    async def keep(self) -> bool:
        """Take or renew the lease when due; whether this relay holds it. Raises on MongoDB errors
        (the lease then lapses on its own when ``valid()`` turns false)."""
        started = time.monotonic()
        if self.held and self.valid() and started < self._renew_at:
            return True
        now = datetime.now(UTC)
        try:
            takeable = [
                {"owner": self.owner},
                {"expiresAt": {"$lte": now}},
                # No relay writes these; as they never lapse, such a lease would be refused to all for good.
                {"expiresAt": {"$gt": now + timedelta(seconds=2 * MAX_TTL_S)}},
                {"expiresAt": {"$not": {"$type": "date"}}},
            ]
            await self._col.find_one_and_update(
                {"_id": self.name, "$or": takeable},
                {"$set": {"owner": self.owner, "expiresAt": now + timedelta(seconds=self.ttl_s)}},
                upsert=True,
            )
        except DuplicateKeyError:  # the document exists, held by another relay and not expired
            self._lose()
            return False
        self._valid_until = started + self.ttl_s * 2 / 3
        self._renew_at = started + self.ttl_s / 3
        if not self.held:
            self.held = True
            log.info("relay_lease_acquired", lease=self.name, owner=self.owner)
        return self.valid()  # a round trip slower than the lease's validity leaves nothing to send in

    def _lose(self) -> None:
        if self.held:
            log.warning("relay_lease_lost", lease=self.name, owner=self.owner)
        self.held = False
        self._valid_until = 0.0

    async def release(self) -> None:
        """Give the lease up at once (a stopping relay), so another relay need not wait for it to expire."""
        was_held = self.held
        self.held = False
        self._valid_until = 0.0
        if was_held:
            await self._col.delete_one({"_id": self.name, "owner": self.owner})
            log.info("relay_lease_released", lease=self.name, owner=self.owner)
