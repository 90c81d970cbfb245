"""Live counters without floods: at most one post per key and window, and the latest value always.

Hot counters (the catalog's ``bulk`` types with an ordering key: ``event.rsvp.updated``,
``event.attendance.updated``) can change a thousand times a second. Within ``FANOUT_CONFLATE_MS`` only the
latest value per key is posted: the first event of a quiet key goes at once; later ones wait for the end
of the window, and one that waits is superseded by any newer one, so at most one event per key waits.
A superseded event is deleted as ``conflated``. The event that waits last is always posted: the final
value arrives, at most one window late.

The key is the type, the ordering key (``event:42``), the payload version and the target: events that reach
different audiences never replace each other. "Newer" is ``meta.seq`` when the publisher set it, else
``sentAt``. Each process keeps its own windows; across the pool a high-water mark per key in MongoDB
(``fanoutlatest``, claimed by the event about to be posted) keeps an older value from being posted after a
newer one, so the last frame a client gets carries the final value. A remainder or shard of an older
value is dropped once a newer one was claimed, and so is a retry of one of its posts (``Claim``): a 429 or
5xx retried after the newer value was posted would leave the older one as the client's last frame.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from fanout.catalog import Policy, lookup, policy_for
from fanout.envelope import MAX_SEQ, QueueBody
from fanout.worker.received import Received

LATEST = "fanoutlatest"
KEEP_S = 86400  # a key's high-water mark outlives its last event by this much (TTL)
_IDLE_SLOTS = 4096  # past this many keys, the idle ones are forgotten
#: The largest order a value can have: a ``meta.seq`` is at most 2^53-1, a ``sentAt`` of year 9999 less. A
#: mark beyond it, NaN or no number at all was not written by a claim (a corrupt or hostile document).
MAX_ORDER = float(MAX_SEQ)
#: A ``sentAt`` further ahead of this process's clock is no order (a publisher's clock or bug): claimed, it
#: would conflate every later value of its key until the clock got there, for up to a day (``KEEP_S``).
AHEAD_S = 300


def key_of(body: QueueBody) -> str | None:
    """What an event is conflated by; None for an event without an ordering key."""
    ordering = body.meta.ordering_key
    if ordering is None:
        spec = lookup(body.type, body.payload_version)
        ordering = spec.ordering_key(body.payload) if spec is not None else None
    if ordering is None:
        return None
    t = body.target
    parts = [body.type, ordering, body.payload_version, sorted(t.user_ids), sorted(t.topics), t.broadcast]
    parts.append(sorted(t.connection_ids))
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()[:40]


def order_of(body: QueueBody) -> float:
    """Which of two events of a key is newer: ``meta.seq``, else ``sentAt``."""
    return float(body.meta.seq) if body.meta.seq is not None else body.sent_at_epoch


@dataclass
class _Slot:
    last: float = float("-inf")  # loop time of the last post admitted
    waiting: tuple[float, asyncio.Future[bool]] | None = None  # (order, answer) of the event that waits
    timer: asyncio.TimerHandle | None = None
    claimed: float = float("-inf")  # the newest value this process claimed


#: An admitted value's question before a retry of one of its posts: was a newer value of its key claimed?
Claim = Callable[[], Awaitable[bool]]


class Conflator:
    """Admits events to be posted; one per worker process."""

    def __init__(self, latest: AsyncCollection[dict[str, Any]] | None, window_s: float) -> None:
        self._latest = latest
        self.window = window_s
        self._slots: dict[str, _Slot] = {}
        self._indexed = False

    def conflates(self, body: QueueBody) -> bool:
        """Whether ``admit`` may hold or drop this event: such events take no per-key turn (ordering.py),
        or a newer value would wait behind the one it is about to replace."""
        return self.window > 0 and policy_for(body.type).latest_only and key_of(body) is not None

    async def admit(self, msg: Received, policy: Policy) -> bool | Claim:
        """True: post the event now. False: a newer value of its key is, or was, posted instead. A
        ``Claim``: post this value of a conflated key now, and before retrying a post, ask the claim
        whether a newer value was claimed since (then the retry is not made)."""
        body = msg.body
        if self.window <= 0 or policy.priority != "bulk" or body is None:
            return True
        key = key_of(body)
        if key is None:
            return True
        order = order_of(body)
        if body.meta.seq is None and order > time.time() + AHEAD_S:
            return True  # posted as it is, unconflated: it claims nothing, so it silences no later value
        if msg.routing.is_part:  # a remainder or a shard: never held back, but never older than what went
            if await self._newer(key, order):
                return False
        elif not (await self.turn(key, order) and await self._claim(key, order)):
            return False
        return functools.partial(self.superseded, key, order)

    async def superseded(self, key: str, order: float) -> bool:
        """A newer value of ``key`` than ``order`` was claimed: by this process (known here, no query), or
        by any process of the pool (the high-water mark). Asked only before a retry. A MongoDB error
        answers False: the retry goes ahead, as it did before this question was asked."""
        slot = self._slots.get(key)
        if slot is not None and slot.claimed > order:
            return True
        try:
            return await self._newer(key, order)
        except PyMongoError:
            return False

    async def turn(self, key: str, order: float) -> bool:
        """Wait for the key's window: True when this event is the one to post, False when superseded."""
        loop = asyncio.get_running_loop()
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= _IDLE_SLOTS:
                self._forget_idle(loop.time())
            slot = self._slots[key] = _Slot()
        waiting = slot.waiting
        if waiting is not None and not waiting[1].done():
            if order < waiting[0]:
                return False  # older than the event already waiting
            waiting[1].set_result(False)
        elif loop.time() - slot.last >= self.window:
            slot.last = loop.time()
            return True
        answer: asyncio.Future[bool] = loop.create_future()
        slot.waiting = (order, answer)
        if slot.timer is None:
            slot.timer = loop.call_at(slot.last + self.window, self._due, key)
        return await answer

    def _due(self, key: str) -> None:
        slot = self._slots[key]
        slot.timer = None
        waiting, slot.waiting = slot.waiting, None
        if waiting is not None and not waiting[1].done():
            slot.last = asyncio.get_running_loop().time()
            waiting[1].set_result(True)

    def _forget_idle(self, now: float) -> None:
        for key, slot in list(self._slots.items()):
            if slot.timer is None and slot.waiting is None and now - slot.last >= self.window:
                del self._slots[key]

    async def _claim(self, key: str, order: float) -> bool:
        """Raise the key's high-water mark to ``order``; False when a newer event was claimed already."""
        if self._latest is None:
            self._claimed(key, order)
            return True
        if not self._indexed:
            await self._latest.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
            self._indexed = True
        expires = datetime.now(UTC) + timedelta(seconds=KEEP_S)
        # An equal mark passes: the same event received twice is posted again (at least once). So does a
        # corrupt one, which would otherwise drop every value of the key for as long as it lasts.
        claimable = [
            {"order": {"$lte": order}},
            {"order": {"$gt": MAX_ORDER}},
            {"order": {"$not": {"$gte": float("-inf")}}},  # missing, null, not a number, NaN
        ]
        try:
            await self._latest.update_one(
                {"_id": key, "$or": claimable},
                {"$set": {"order": order, "expiresAt": expires}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        self._claimed(key, order)
        return True

    def _claimed(self, key: str, order: float) -> None:
        slot = self._slots.get(key)
        if slot is not None and order > slot.claimed:
            slot.claimed = order

    async def _newer(self, key: str, order: float) -> bool:
        if self._latest is None:
            return False
        newer = {"_id": key, "order": {"$gt": order, "$lte": MAX_ORDER}}  # a corrupt mark is none
        return await self._latest.find_one(newer, {"_id": 1}) is not None
