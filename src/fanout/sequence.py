"""Per-key sequence numbers for ordered events, allocated atomically in MongoDB when an event is published.

One counter document per ordering key in ``fanoutsequences`` (``FANOUT_SEQUENCES_COLLECTION``):
``{"_id": "<key>", "seq": n}``. ``$inc`` with ``upsert`` makes the first event of a key ``seq`` 1 and every
later one the next integer, whatever the number of publishers, so a client that holds ``seq`` n of a key
knows exactly which events of that key it has not seen. The lifecycle reads the counters to tell a
resuming client how far a key has gone (``system.resync``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient, MongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

DEFAULT_COLLECTION = "fanoutsequences"


def _seq(doc: dict[str, Any] | None) -> int:
    value = doc.get("seq") if doc else None
    if not isinstance(value, int):  # only $inc writes it; anything else is a corrupted counter
        raise ValueError("sequence counter is not an integer")
    return value


class SequenceAllocator:
    """Allocates the next ``seq`` of an ordering key (asyncio, ``AsyncMongoClient``); pass one to an
    ``AsyncPublisher`` and publish with ``ordering_key=...``."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], db: str, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self._col: AsyncCollection[dict[str, Any]] = client[db][collection]

    async def next(self, key: str) -> int:
        """The next sequence number of ``key``: 1 for its first event."""
        doc = await self._col.find_one_and_update(
            {"_id": key}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return _seq(doc)


class SyncSequenceAllocator:
    """The same for the synchronous ``Publisher`` (pymongo's ``MongoClient``)."""

    def __init__(
        self, client: MongoClient[dict[str, Any]], db: str, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self._col = client[db][collection]

    def next(self, key: str) -> int:
        """The next sequence number of ``key``: 1 for its first event."""
        doc = self._col.find_one_and_update(
            {"_id": key}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        return _seq(doc)


async def latest(col: AsyncCollection[dict[str, Any]], keys: Iterable[str]) -> dict[str, int]:
    """The last allocated ``seq`` of each key that has one."""
    wanted = list(keys)
    if not wanted:
        return {}
    docs = await col.find({"_id": {"$in": wanted}}).to_list(None)
    return {
        d["_id"]: d["seq"] for d in docs if isinstance(d.get("_id"), str) and isinstance(d.get("seq"), int)
    }
