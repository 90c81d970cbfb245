"""Per-key sequence numbers for ordered events, allocated atomically in MongoDB when an event is published.

One counter document per ordering key in ``fanoutsequences`` (``FANOUT_SEQUENCES_COLLECTION``):
``{"_id": "<key>", "seq": n}``, created at 0 on a key's first use, then ``find_one_and_update`` with
``$inc``: the first event of a key gets ``seq`` 1 and every later one the next integer, whatever the
number of publishers, so a client that holds ``seq`` n of a key knows exactly which events of that
key it has not seen. One round trip per event (two on a key's first use in a process). The lifecycle
reads the counters to tell a resuming client how far a key has gone (``system.resync``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from pymongo import AsyncMongoClient, MongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from fanout.envelope import MAX_SEQ

DEFAULT_COLLECTION = "fanoutsequences"
#: Keys whose counter this allocator knows to exist (bounded; forgetting one costs one more write).
KNOWN_KEYS = 10_000
_INC = {"$inc": {"seq": 1}}
_CREATE = {"$setOnInsert": {"seq": 0}}


def _seq(doc: dict[str, Any] | None) -> int | None:
    value = doc.get("seq") if doc else None
    if doc is not None and not isinstance(value, int):  # only $inc writes it: a corrupted counter
        raise ValueError("sequence counter is not an integer")
    return value


class _Known:
    """The keys whose counter exists. A key's first allocation creates its counter with an idempotent
    upsert and then increments it without one: concurrent upserts of one new key race (MongoDB may
    answer one with a duplicate-key error, and SecantusDB answered some with no document although it
    had incremented), while an increment of an existing document always returns it."""

    def __init__(self) -> None:
        self._keys: dict[str, None] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > KNOWN_KEYS:
            del self._keys[next(iter(self._keys))]

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)


class SequenceAllocator:
    """Allocates the next ``seq`` of an ordering key (asyncio, ``AsyncMongoClient``); pass one to an
    ``AsyncPublisher`` and publish with ``ordering_key=...``."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], db: str, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self._col: AsyncCollection[dict[str, Any]] = client[db][collection]
        self._known = _Known()

    async def next(self, key: str) -> int:
        """The next sequence number of ``key``: 1 for its first event."""
        for _ in range(2):
            if key not in self._known:
                with contextlib.suppress(DuplicateKeyError):
                    await self._col.update_one({"_id": key}, _CREATE, upsert=True)
                self._known.add(key)
            doc = await self._col.find_one_and_update(
                {"_id": key}, _INC, return_document=ReturnDocument.AFTER
            )
            if (seq := _seq(doc)) is not None:
                return seq
            self._known.forget(key)  # the counter was removed meanwhile: create it again
        raise RuntimeError("the sequence counter could not be created")


class SyncSequenceAllocator:
    """The same for the synchronous ``Publisher`` (pymongo's ``MongoClient``)."""

    def __init__(
        self, client: MongoClient[dict[str, Any]], db: str, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self._col = client[db][collection]
        self._known = _Known()

    def next(self, key: str) -> int:
        """The next sequence number of ``key``: 1 for its first event."""
        for _ in range(2):
            if key not in self._known:
                with contextlib.suppress(DuplicateKeyError):
                    self._col.update_one({"_id": key}, _CREATE, upsert=True)
                self._known.add(key)
            doc = self._col.find_one_and_update({"_id": key}, _INC, return_document=ReturnDocument.AFTER)
            if (seq := _seq(doc)) is not None:
                return seq
            self._known.forget(key)
        raise RuntimeError("the sequence counter could not be created")


async def latest(col: AsyncCollection[dict[str, Any]], keys: Iterable[str]) -> dict[str, int]:
    """The last allocated ``seq`` of each key that has one."""
    wanted = list(keys)
    if not wanted:
        return {}
    docs = await col.find({"_id": {"$in": wanted}}).to_list(None)
    # A counter that is no seq (a boolean, negative, past 2^53-1: corrupt, none can be allocated from it)
    # is no counter: a resync must never name a value the clients drop.
    return {
        d["_id"]: d["seq"]
        for d in docs
        if isinstance(d.get("_id"), str) and type(d.get("seq")) is int and 0 <= d["seq"] <= MAX_SEQ
    }
