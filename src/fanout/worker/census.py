"""The socket census: how many connections are live, and how many records MongoDB's TTL monitor removed.

One process counts, once per ``FANOUT_CENSUS_INTERVAL_S``: the pool's slot 0 in each task and, of those,
only the holder of a lease in MongoDB (collection ``fanoutleases``, renewed every interval, taken over once
it lapses), so a fleet of tasks counts each record once. Every other process keeps both figures at 0: the
pool's ``livesum`` of ``fanout_active_connections`` is the sampler's count, and the sum of
``fanout_connections_expired_total`` over all tasks counts each removal once.

Records removed by the TTL index cannot be counted after the fact (they are gone), so they are estimated:
each sample notes the ids of the records whose ``expiresAt`` falls before the sample after next (at most
``MAX_TRACKED``, the count scaled up beyond that); at the next sample, a noted record that is gone and whose
``expiresAt`` has passed counts as removed by the TTL monitor. A record deleted before it expired
(``$disconnect``, a prune after a 410) or refreshed by a client frame does not count. The estimate misses
records that connect and expire between two samples (only with a TTL shorter than the interval), and
counts the rare record that a ``$disconnect`` or a prune deleted after its ``expiresAt`` had passed.

The same sample tells presence about users whose records lapsed without a ``$disconnect`` (API Gateway
sends it best effort): every noted record whose ``expiresAt`` has passed, gone or not, names its user to
``on_lapsed``, which checks whether that was the user's last (``worker/checks.py``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fanout.logging import get_logger
from fanout.metrics import Metrics

log = get_logger("fanout.census")

LEASES = "fanoutleases"
MAX_TRACKED = 5000  # ids noted per sample; the count of gone ones is scaled up past it
_CHUNK = 500  # ids per $in query
#: A noted record: its expiresAt, its user and its lastSeenAt (when they are what the store writes).
_Due = tuple[datetime, str | None, datetime | None]
#: Told the users whose noted records lapsed, with the latest lastSeenAt of each.
LapsedHook = Callable[[dict[str, datetime]], Awaitable[None]]


def _utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Lease:
    """A named lease in MongoDB: one holder at a time, until it stops renewing for ``ttl_s``."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], name: str, ttl_s: float) -> None:
        self._col = collection
        self.name = name
        self.ttl = timedelta(seconds=ttl_s)
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"

    async def hold(self) -> bool:
        """Take or renew the lease; False while another holder's has not lapsed."""
        now = datetime.now(UTC)
        takeable = [
            {"holder": self.holder},
            {"until": {"$lt": now}},
            # No holder writes these; as they never lapse, such a lease would be refused to all for good.
            {"until": {"$gt": now + 2 * self.ttl}},
            {"until": {"$not": {"$type": "date"}}},
        ]
        try:  # matches our own lease, a lapsed or a corrupt one; else the upsert collides on _id
            await self._col.update_one(
                {"_id": self.name, "$or": takeable},
                {"$set": {"holder": self.holder, "until": now + self.ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True


class Census:
    """Samples the connection records into ``metrics`` while it holds the lease."""

    def __init__(
        self,
        records: AsyncCollection[dict[str, Any]],
        lease: Lease,
        metrics: Metrics,
        interval_s: float,
        on_lapsed: LapsedHook | None = None,
    ) -> None:
        self._records = records
        self.lease = lease
        self.metrics = metrics
        self.interval_s = interval_s
        self.on_lapsed = on_lapsed
        self._due: dict[str, _Due] = {}  # noted at the last sample, by connection id
        self._scale = 1.0

    async def run(self) -> None:
        """Sample every interval until cancelled; a failed sample is logged and tried again."""
        while True:
            try:
                await self.sample()
            except Exception as exc:  # MongoDB away: the readiness probe reports it; try next interval
                log.warning("census_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> bool:
        """One sample; False (and both figures left at 0 here) while another process holds the lease."""
        if not await self.lease.hold():
            self.metrics.active_connections.set(0)
            self._due = {}  # the holder counts; were this one to take over, it starts afresh
            return False
        now = datetime.now(UTC)
        active = await self._records.count_documents({"expiresAt": {"$gt": now}})
        expired, lapsed = await self._expired(now)
        self.metrics.active_connections.set(active)
        if expired:
            self.metrics.connections_expired.inc(expired)
        await self._note_due(now)
        if lapsed and self.on_lapsed is not None:
            await self.on_lapsed(lapsed)
        return True

    async def _expired(self, now: datetime) -> tuple[int, dict[str, datetime]]:
        """Noted records that are gone now, their ``expiresAt`` passed: the TTL monitor's removals; and
        the users of every noted record that lapsed, gone or still there, with their last sight."""
        if not self._due:
            return 0, {}
        ids = list(self._due)
        present: dict[str, datetime | None] = {}
        for start in range(0, len(ids), _CHUNK):
            query = {"connectionId": {"$in": ids[start : start + _CHUNK]}}
            async for doc in self._records.find(query, {"_id": 0, "connectionId": 1, "expiresAt": 1}):
                cid = doc.get("connectionId")
                if isinstance(cid, str):  # $in matches an array of ids by an element: no record of one
                    present[cid] = _utc(doc.get("expiresAt"))
        gone = sum(1 for cid, (expires, _, _) in self._due.items() if cid not in present and expires <= now)
        lapsed: dict[str, datetime] = {}
        for cid, (expires, user, seen) in self._due.items():
            current = present.get(cid)
            if user is None or expires > now or (current is not None and current > now):
                continue  # not lapsed yet, or refreshed by a frame since it was noted
            seen = seen or expires
            lapsed[user] = max(seen, lapsed.get(user, seen))
        return round(gone * self._scale), lapsed

    async def _note_due(self, now: datetime) -> None:
        """Note the records that expire before the sample after next (expired ones still there included)."""
        query = {"expiresAt": {"$lte": now + timedelta(seconds=2 * self.interval_s)}}
        due: dict[str, _Due] = {}
        fields = {"_id": 0, "connectionId": 1, "expiresAt": 1, "userId": 1, "lastSeenAt": 1}
        cursor = self._records.find(query, fields).limit(MAX_TRACKED)
        async for doc in cursor:
            cid, expires, user = doc.get("connectionId"), _utc(doc.get("expiresAt")), doc.get("userId")
            if isinstance(cid, str) and expires is not None:
                due[cid] = (
                    expires,
                    user if isinstance(user, str) and user else None,
                    _utc(doc.get("lastSeenAt")),
                )
        self._scale = 1.0
        if len(due) >= MAX_TRACKED:
            self._scale = await self._records.count_documents(query) / len(due)
        self._due = due
