"""``ConnectionStore``: the connection records in MongoDB, compatible with the ones the existing API writes.
The lifecycle writes them (connect, frames, topics, disconnect); the worker reads them (``resolve.py``),
prunes the gone and takes revoked topics off them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from fanout.config import Settings
from fanout.errors import ConfigError
from fanout.store.records import (
    PROJECTION,
    Connection,
    SkipHook,
    bucket_of,
    now_utc,
    payload_entries,
    to_connection,
)
from fanout.store.resolve import Resolver


def mongo_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A MongoDB client whose every operation has a deadline: a server that accepts connections but
    answers nothing (frozen, partitioned) fails calls within ``FANOUT_MONGO_TIMEOUT_MS``. ``ConfigError``
    for a URI pymongo refuses with a plain ``ValueError`` (a port out of range), never quoting it."""
    try:
        return AsyncMongoClient(
            settings.mongo(),
            tz_aware=True,
            # A date past year 9999 (JavaScript's reach to 275760) comes back as DatetimeMS, which the
            # record checks skip, instead of failing the decode of every record in the same reply.
            datetime_conversion="DATETIME_AUTO",
            serverSelectionTimeoutMS=settings.mongo_timeout_ms,
            timeoutMS=settings.mongo_timeout_ms,
        )
    except PyMongoError:
        raise  # InvalidURI and the like: each command reports those as MongoDB not answering
    except ValueError:
        raise ConfigError("bad setting FANOUT_MONGO_URI: pymongo cannot read it (ValueError)") from None


class ConnectionStore(Resolver):
    """Reads and writes connection records compatible with the ones the existing API writes; the reads of
    a fan-out are ``Resolver``'s."""

    @classmethod
    def from_client(
        cls,
        client: AsyncMongoClient[dict[str, Any]],
        db: str,
        collection: str,
        on_skip: SkipHook | None = None,
    ) -> ConnectionStore:
        return cls(client[db][collection], on_skip)

    @property
    def database(self) -> AsyncDatabase[dict[str, Any]]:
        """The database of the records, where the other collections (tickets, the history, the sequence
        counters) live too."""
        return self._col.database

    async def ensure_indexes(self) -> None:
        """Create the indexes the record shape needs; safe to call on every start."""
        await self._col.create_index([("connectionId", ASCENDING)], unique=True)
        await self._col.create_index([("userId", ASCENDING)])
        await self._col.create_index([("topics", ASCENDING)])
        await self._col.create_index([("bucket", ASCENDING)])
        await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)

    async def put(self, connection_id: str, user_id: str, domain_name: str, stage: str, ttl_s: int) -> None:
        """Store a new connection record (the ``$connect`` route), replacing any record the id still has:
        a new connection inherits nothing (topics, payload versions, rate counts) from an earlier one."""
        now = now_utc()
        await self._col.replace_one(
            {"connectionId": connection_id},
            {
                "connectionId": connection_id,
                "userId": user_id,
                "bucket": bucket_of(connection_id),
                "domainName": domain_name,
                "stage": stage,
                "connectedAt": now,
                "lastSeenAt": now,
                "expiresAt": now + timedelta(seconds=ttl_s),
            },
            upsert=True,
        )

    async def touch(self, connection_id: str, ttl_s: int) -> str | None:
        """Refresh ``lastSeenAt``/``expiresAt`` of a live connection; its user id, None without a record."""
        now = now_utc()
        doc = await self._col.find_one_and_update(
            {"connectionId": connection_id},  # a frame proves the socket is open, even past expiresAt
            {"$set": {"lastSeenAt": now, "expiresAt": now + timedelta(seconds=ttl_s)}},
            projection={"_id": 0, "userId": 1},
        )
        user = doc.get("userId") if doc else None
        return user if isinstance(user, str) and user else None

    async def others_live(
        self, connection_id: str, user_id: str, *, seen_within_s: float, at_most: int
    ) -> int:
        """How many of the user's connections but this one connected or sent a frame within the last
        ``seen_within_s`` seconds; counting stops at ``at_most``. Records every lookup skips do not count:
        expired ones, and a ``userId`` that is not one value."""
        now = now_utc()
        query = {
            "userId": {"$eq": user_id, "$not": {"$type": "array"}},
            "connectionId": {"$ne": connection_id},
            "expiresAt": {"$gt": now},
            "lastSeenAt": {"$gte": now - timedelta(seconds=seen_within_s)},
        }
        return await self._col.count_documents(query, limit=at_most)

    async def subscribe(self, connection_id: str, topics: list[str], cap: int) -> list[str] | None:
        """Add topics to a connection's interests unless that would make more than ``cap`` in total;
        the resulting list, or None when refused (or the connection has no record). Atomic: the size
        check and the addition are one update, so concurrent frames cannot pass the cap together."""
        doc = await self._col.find_one({"connectionId": connection_id}, {"_id": 0, "topics": 1})
        if doc is None:
            return None
        current = doc.get("topics")
        if "topics" in doc and not isinstance(current, list):  # $addToSet refuses it: held is nothing
            await self._empty_malformed_topics(connection_id)
        held = _held(current)
        new = [t for t in topics if t not in held]
        if len(held) + len(new) > cap:
            return None
        if not new:
            return held
        doc = await self._col.find_one_and_update(
            {"connectionId": connection_id, f"topics.{cap - len(new)}": {"$exists": False}},
            {"$addToSet": {"topics": {"$each": new}}},
            projection={"_id": 0, "topics": 1},
            return_document=ReturnDocument.AFTER,
        )
        return _held(doc["topics"]) if doc is not None else None

    async def unsubscribe(self, connection_id: str, topics: list[str]) -> list[str]:
        """Remove topics from a connection's interests; the resulting list."""
        doc = await self._col.find_one_and_update(
            {
                "connectionId": connection_id,
                "$or": [{"topics": {"$exists": False}}, {"topics": {"$type": "array"}}],
            },
            {"$pullAll": {"topics": topics}},
            projection={"_id": 0, "topics": 1},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # no record, or a malformed topics ($pullAll refuses it), which holds nothing
            await self._empty_malformed_topics(connection_id)
            return []
        return _held(doc.get("topics"))

    async def _empty_malformed_topics(self, connection_id: str) -> None:
        """Set ``topics`` to an empty list where another writer left something else (a string, null): it
        is read as no topics held, and the updates of a list would fail on it."""
        await self._col.update_one(
            {"connectionId": connection_id, "topics": {"$exists": True, "$not": {"$type": "array"}}},
            {"$set": {"topics": []}},
        )

    async def revoke(self, user_ids: list[str], topics: list[str]) -> int:
        """Take ``topics`` off every record of ``user_ids`` (a ``system.access.revoked``): one
        ``update_many``, expired records included (a frame can still revive one). A ``user:`` topic is
        never taken: a user always follows its own. A malformed record holding one revoked topic as a
        string, which a lookup matches too and ``$pull`` refuses, is emptied by a second one. The number
        of records changed."""
        topics = [t for t in topics if not t.startswith("user:")]
        if not (user_ids and topics):
            return 0
        users = {"userId": {"$in": user_ids}}
        # $elemMatch: lists only, so a malformed record cannot fail the update for the user's other records
        listed = await self._col.update_many(
            users | {"topics": {"$elemMatch": {"$in": topics}}}, {"$pull": {"topics": {"$in": topics}}}
        )
        single = await self._col.update_many(
            users | {"topics": {"$in": topics, "$not": {"$type": "array"}}}, {"$set": {"topics": []}}
        )
        return listed.modified_count + single.modified_count

    async def hello(self, connection_id: str, protocol: int, payloads: dict[str, list[int]] | None) -> bool:
        """Store what a connection speaks: its protocol and, when declared, its payload versions (a hello
        without them unsets any earlier ones). False when the connection has no record."""
        update: dict[str, Any] = {"$set": {"protocol": protocol}}
        if payloads is None:
            update["$unset"] = {"payloads": ""}
        else:
            update["$set"]["payloads"] = payload_entries(payloads)
        result = await self._col.update_one({"connectionId": connection_id}, update)
        return result.matched_count > 0

    async def ask_upgrade_once(self, connection_id: str, key: str) -> bool:
        """Record that a connection was asked to upgrade for ``key`` (``type@version``); True only for
        the first caller, so of several workers meeting the same event exactly one asks."""
        result = await self._col.update_one(
            {"connectionId": connection_id, "upgradeAsked": {"$ne": key}},
            {"$addToSet": {"upgradeAsked": key}},
        )
        return result.modified_count > 0

    async def take_slot(
        self, connection_id: str, kind: str, window: int, limit: int, cost: int = 1, *, window_s: int
    ) -> bool:
        """Count ``cost`` units of ``kind`` (``forward``, ``typing``, ``subscribe``...: frames, or the
        topics or users a frame names) in the connection's current rate window (``window``: its start, in
        seconds since the epoch, so windows of different lengths compare; ``window_s``: its length);
        False when they would take the window past ``limit``, and then nothing is counted. Each step is
        one atomic update on the record (``<kind>Window``, ``<kind>Count``), so concurrent frames (several
        Lambda containers) cannot pass more than ``limit`` together.

        Windows only move forward: a frame whose window is older than the record's (a container whose
        clock is a little behind, a frame computed just before the boundary) counts in the record's newer
        window rather than opening its own again, which let frames alternating between two windows each
        reset the count. A record's window more than ``window_s`` ahead, or a count that is no number
        (a clock far ahead, a corrupt or hostile record), is opened afresh: it would refuse the connection
        until the clock got there, or fail the count's ``$inc``."""
        if cost > limit:
            return False
        field_window, field_count = f"{kind}Window", f"{kind}Count"
        current = {"$gte": window, "$lte": window + window_s}
        count = ({"connectionId": connection_id, field_window: current,
                  field_count: {"$lte": limit - cost, "$not": {"$type": "array"}}},
                 {"$inc": {field_count: cost}})  # fmt: skip
        if (await self._col.update_one(*count)).matched_count:
            return True
        stale = [  # no window yet, an older one, one far ahead or no number; a count that is no number
            {field_window: {"$not": current}},
            {field_count: {"$not": {"$type": "number"}}},
            {field_count: {"$type": "array"}},
        ]
        opened = await self._col.update_one(
            {"connectionId": connection_id, "$or": stale}, {"$set": {field_window: window, field_count: cost}}
        )
        if opened.matched_count:
            return True
        # The window is current: full, or opened by a concurrent frame between the two steps.
        return (await self._col.update_one(*count)).matched_count > 0

    async def remove(self, connection_id: str) -> str | None:
        """Delete a record (the ``$disconnect`` route); the user id it had, None when there was none."""
        doc = await self._col.find_one_and_delete({"connectionId": connection_id}, {"_id": 0, "userId": 1})
        user = doc.get("userId") if doc else None
        return user if isinstance(user, str) and user else None

    def sibling(self, name: str) -> AsyncCollection[dict[str, Any]]:
        """Another collection of the records' database (e.g. the lifecycle's recent disconnects)."""
        return self._col.database[name]

    async def prune(self, conn: Connection) -> bool:
        """Delete a gone connection's record, and only that record: a re-used id with a newer
        ``connectedAt`` belongs to another connection and is kept. A record read without one (another
        writer's) is deleted only while it still has none: ``$connect`` re-using the id dates its record."""
        # None matches a missing or null field, never a date: a record replaced meanwhile is not deleted.
        dated = {"$lte": conn.connected_at} if conn.connected_at is not None else None
        query: dict[str, Any] = {"connectionId": conn.connection_id, "connectedAt": dated}
        result = await self._col.delete_one(query)
        return result.deleted_count > 0

    async def interests(self, connection_id: str) -> tuple[Connection, list[str]] | None:
        """A live connection and the topics it holds; None without a usable live record."""
        query = {"connectionId": connection_id, "expiresAt": {"$gt": now_utc()}}
        doc = await self._col.find_one(query, PROJECTION | {"topics": 1})
        conn = to_connection(doc) if doc is not None else None
        if conn is None or doc is None:
            return None
        return conn, _held(doc.get("topics"))

    async def get(self, connection_id: str) -> dict[str, Any] | None:
        return await self._col.find_one({"connectionId": connection_id}, {"_id": 0})


def _held(topics: Any) -> list[str]:
    """The topics a record holds as the lifecycle reads them: the strings of its list (another writer's
    null, string or other values hold nothing)."""
    return [t for t in topics if isinstance(t, str)] if isinstance(topics, list) else []
