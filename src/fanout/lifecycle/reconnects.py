"""Reconnects: a ``$connect`` by a user whose connection closed within ``WINDOW_S`` seconds.

``$disconnect`` notes the time per user in a small collection beside the connection records
(``websocketdisconnects``: ``_id`` is the user id, with ``disconnectedAt`` and an ``expiresAt`` under a TTL
index, so it empties itself); ``$connect`` reads it. Every tab of a user that drops and comes back counts.
An estimate: a client that reconnects before API Gateway noticed its old connection close (its
``$disconnect`` arrives after the new ``$connect``) is not counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

#: A connect this soon after the same user's disconnect is a reconnect.
WINDOW_S = 30
COLLECTION = "websocketdisconnects"


class RecentDisconnects:
    """When each user last disconnected, kept for ``window_s``."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], window_s: float = WINDOW_S) -> None:
        self._col = collection
        self.window = timedelta(seconds=window_s)
        self._indexed = False

    async def note(self, user_id: str) -> None:
        """Remember that ``user_id`` disconnected now (the ``$disconnect`` route)."""
        if not self._indexed:  # once per process: the only writer makes its own TTL index
            await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
            self._indexed = True
        now = datetime.now(UTC)
        await self._col.update_one(
            {"_id": user_id},
            {"$set": {"disconnectedAt": now, "expiresAt": now + self.window}},
            upsert=True,
        )

    async def is_reconnect(self, user_id: str) -> bool:
        """Whether ``user_id`` disconnected within the window (the TTL monitor is lazy: the time decides)."""
        since = datetime.now(UTC) - self.window
        found = await self._col.find_one({"_id": user_id, "disconnectedAt": {"$gte": since}}, {"_id": 1})
        return found is not None
