"""Presence: whether a user has a live connection, announced once per real change.

The lifecycle keeps one document per user in ``fanoutpresence``: ``status`` (``online``/``offline``),
``epoch`` (counted up by every ``$connect``), ``lastSeenAt``, and ``offlineBy`` (the check that set it
offline, so the same check received twice holds twice). A ``$connect`` sets ``online`` and learns
from the document as it was whether that is a change: only the user's first tab announces it. The last
``$disconnect`` does not decide ``offline`` itself: it asks the worker to check a few seconds later
(``FANOUT_PRESENCE_GRACE_S``), so a reconnect in between changes nothing. The check (``offline``) reads the
document, looks for a live record, and sets ``offline`` only if the document still holds the ``epoch``
it read: a ``$connect`` racing the check wins. The worker's census asks the same for users whose last
record lapsed without a ``$disconnect``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

COLLECTION = "fanoutpresence"
#: An epoch is a whole count below this: past it ``$inc`` stops changing a double and overflows an int64.
MAX_EPOCH = 2**53 - 1
#: An epoch a ``$connect`` counts on: none yet, or a number of the counter's range (NaN is none).
_COUNTED = {"$or": [{"epoch": {"$exists": False}},
                    {"epoch": {"$gte": 0, "$lt": MAX_EPOCH, "$not": {"$type": "array"}}}]}  # fmt: skip


def iso(at: datetime) -> str:
    """A stored time as the catalog's timestamps: ``2026-11-29T20:00:00.000Z``."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PresenceStore:
    """Presence documents, and the connection records they are checked against."""

    def __init__(self, presence: AsyncCollection[dict[str, Any]], records: AsyncCollection[dict[str, Any]]):
        self._col = presence
        self._records = records

    async def online(self, user_id: str) -> bool:
        """Mark the user online (a ``$connect``); True when they were not online before. An epoch that is
        no counter (text, an array, NaN, negative, past ``MAX_EPOCH``: a corrupt or hostile document) is
        set to 0 first and then counted: it failed every ``$inc`` (no online, no offline, for good) or
        stopped changing (NaN, 2^53: the offline check's guard against a racing connect)."""
        update = {"$inc": {"epoch": 1}, "$set": {"status": "online", "onlineAt": datetime.now(UTC)}}
        try:
            before = await self._col.find_one_and_update(
                {"_id": user_id} | _COUNTED, update, projection={"status": 1}, upsert=True
            )
        except DuplicateKeyError:  # the document's epoch is no counter: start it afresh, then count it
            await self._col.update_one({"_id": user_id, "$nor": [_COUNTED]}, {"$set": {"epoch": 0}})
            before = await self._col.find_one_and_update(
                {"_id": user_id} | _COUNTED, update, projection={"status": 1}, upsert=True
            )
        return before is None or before.get("status") != "online"

    async def left(self, user_id: str, at: datetime) -> bool:
        """After a ``$disconnect``: True when the user has no live record left; then ``lastSeenAt`` is
        raised to ``at`` at once, so ``presence.query`` can answer it before the check confirms."""
        if await self.has_live(user_id):
            return False
        await self._col.update_one({"_id": user_id}, {"$max": {"lastSeenAt": at}}, upsert=True)
        return True

    async def has_live(self, user_id: str) -> bool:
        """Whether the user has a connection record that has not expired. A record whose ``userId`` is an
        array (equality and ``$in`` match it by any element) is no user's, as every lookup takes it."""
        query = {
            "userId": {"$eq": user_id, "$not": {"$type": "array"}},
            "expiresAt": {"$gt": datetime.now(UTC)},
        }
        return await self._records.count_documents(query, limit=1) > 0

    async def offline(self, user_id: str, last_seen: datetime, check_id: str | None = None) -> bool:
        """Mark the user offline if they are online, have no live record, and no ``$connect`` came in
        meanwhile; True when this call (or an earlier receive of the same check, ``check_id``) did."""
        doc = await self._col.find_one({"_id": user_id}, {"status": 1, "epoch": 1, "offlineBy": 1})
        if doc is not None and check_id is not None and doc.get("offlineBy") == check_id:
            return doc.get("status") == "offline"  # the same check received again: it holds as before
        if doc is None or doc.get("status") != "online" or await self.has_live(user_id):
            return False
        result = await self._col.update_one(
            {"_id": user_id, "status": "online", "epoch": doc.get("epoch")},
            {
                "$set": {"status": "offline", "offlineBy": check_id},
                "$max": {"lastSeenAt": min(last_seen, datetime.now(UTC))},
            },
        )
        return result.modified_count > 0

    async def marked_online(self, user_ids: list[str]) -> list[str]:
        """Those of ``user_ids`` whose document says online (the census checks only them)."""
        docs = self._col.find({"_id": {"$in": user_ids}, "status": "online"}, {"_id": 1})
        return [doc["_id"] async for doc in docs]

    async def current(self, user_ids: list[str]) -> list[dict[str, Any]]:
        """``{"userId", "status", "lastSeenAt"}`` of each user, from the live records themselves (a
        document can lag behind them by the grace period); ``lastSeenAt`` is null for an online user
        and for one never seen."""
        now = datetime.now(UTC)
        query = {"userId": {"$in": user_ids, "$not": {"$type": "array"}}, "expiresAt": {"$gt": now}}
        live = set(await self._records.distinct("userId", query))
        seen: dict[str, Any] = {}
        async for doc in self._col.find({"_id": {"$in": [u for u in user_ids if u not in live]}}):
            seen[doc["_id"]] = doc.get("lastSeenAt")
        rows = []
        for user in user_ids:
            last = seen.get(user)
            rows.append(
                {
                    "userId": user,
                    "status": "online" if user in live else "offline",
                    "lastSeenAt": iso(last) if user not in live and isinstance(last, datetime) else None,
                }
            )
        return rows
