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
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
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
        try:  # matches our own lease or a lapsed one; else the upsert collides on _id
            await self._col.update_one(
                {"_id": self.name, "$or": [{"holder": self.holder}, {"until": {"$lt": now}}]},
                {"$set": {"holder": self.holder, "until": now + self.ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True


class Census:
    """Samples the connection records into ``metrics`` while it holds the lease."""

    def __init__(
        self, records: AsyncCollection[dict[str, Any]], lease: Lease, metrics: Metrics, interval_s: float
    ) -> None:
        self._records = records
        self.lease = lease
        self.metrics = metrics
        self.interval_s = interval_s
        self._due: dict[str, datetime] = {}  # noted at the last sample: connection id -> its expiresAt
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
        expired = await self._expired(now)
        self.metrics.active_connections.set(active)
        if expired:
            self.metrics.connections_expired.inc(expired)
        await self._note_due(now)
        return True

    async def _expired(self, now: datetime) -> int:
        """Noted records that are gone now, their ``expiresAt`` passed: the TTL monitor's removals."""
        if not self._due:
            return 0
        ids = list(self._due)
        present: set[str] = set()
        for start in range(0, len(ids), _CHUNK):
            query = {"connectionId": {"$in": ids[start : start + _CHUNK]}}
            async for doc in self._records.find(query, {"_id": 0, "connectionId": 1}):
                present.add(doc["connectionId"])
        gone = sum(1 for cid, expires in self._due.items() if cid not in present and expires <= now)
        return round(gone * self._scale)

    async def _note_due(self, now: datetime) -> None:
        """Note the records that expire before the sample after next (expired ones still there included)."""
        query = {"expiresAt": {"$lte": now + timedelta(seconds=2 * self.interval_s)}}
        due: dict[str, datetime] = {}
        cursor = self._records.find(query, {"_id": 0, "connectionId": 1, "expiresAt": 1}).limit(MAX_TRACKED)
        async for doc in cursor:
            cid, expires = doc.get("connectionId"), doc.get("expiresAt")
            if isinstance(cid, str) and isinstance(expires, datetime):
                due[cid] = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        self._scale = 1.0
        if len(due) >= MAX_TRACKED:
            self._scale = await self._records.count_documents(query) / len(due)
        self._due = due
