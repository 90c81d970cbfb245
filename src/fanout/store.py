"""The connection store: live WebSocket connections per user in MongoDB (``websocketconnections``)."""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from fanout.config import Settings
from fanout.envelope import Target

USER_CHUNK = 500  # user ids per $in query, so one huge audience is many modest queries
BATCH = 1000  # records per batch when streaming a broadcast, a topic or a shard
#: Records carry ``bucket`` (a hash of the connection id): shards of a large audience are bucket ranges.
BUCKETS = 1024
# ``payloads`` is absent from nearly every record, so asking for it costs a lookup nothing.
_PROJECTION = {
    "_id": 0, "connectionId": 1, "userId": 1, "domainName": 1, "stage": 1, "connectedAt": 1, "payloads": 1,
}  # fmt: skip
#: The payload versions a connection understands: event type -> versions (a type left out: version 1).
Payloads = dict[str, frozenset[int]]


@dataclass(frozen=True, slots=True)
class Connection:
    """One live WebSocket connection as the worker needs it."""

    connection_id: str
    user_id: str
    domain_name: str
    stage: str
    connected_at: datetime | None
    payloads: Payloads | None = None  # None: the client declared none, so it speaks version 1 of all

    def speaks(self, event_type: str, version: int) -> bool:
        """Whether the client understands ``version`` of ``event_type``'s payload."""
        if self.payloads is None:
            return version == 1
        return version in self.payloads.get(event_type, _V1)

    @property
    def endpoint(self) -> str:
        """The management-API endpoint key: ``{domainName}/{stage}``."""
        return f"{self.domain_name}/{self.stage}"


def mongo_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    """A MongoDB client whose every operation has a deadline: a server that accepts connections but
    answers nothing (frozen, partitioned) fails calls within ``FANOUT_MONGO_TIMEOUT_MS``."""
    return AsyncMongoClient(
        settings.mongo(),
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        timeoutMS=settings.mongo_timeout_ms,
    )


_LIVE_PROJECTION = _PROJECTION | {"expiresAt": 1}


def _live(doc: dict[str, Any], now: datetime) -> bool:
    expires = doc.get("expiresAt")
    if not isinstance(expires, datetime):
        return False
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) > now


def _scope(target: Target) -> dict[str, Any]:
    """The filter a target puts on records: none for a broadcast, else its users or its topics."""
    if target.broadcast:
        return {}
    ways: list[dict[str, Any]] = [{"userId": {"$in": target.user_ids}}, {"topics": {"$in": target.topics}}]
    if target.connection_ids:
        ways.append({"connectionId": {"$in": target.connection_ids}})
    return {"$or": ways}


def bucket_of(connection_id: str) -> int:
    """The record's bucket, ``0 <= b < BUCKETS``: a hash of its id, so ids of any shape spread evenly."""
    return zlib.crc32(connection_id.encode()) % BUCKETS


def _buckets(shard: tuple[int, int]) -> dict[str, Any]:
    """The filter of a shard: buckets ``[lo, hi)`` as an ``$in`` (an index lookup on any server); the
    last shard also takes records without a bucket (written before buckets, or by another writer)."""
    lo, hi = shard
    wanted = {"bucket": {"$in": list(range(lo, hi))}}
    return {"$or": [wanted, {"bucket": {"$exists": False}}]} if hi >= BUCKETS else wanted


def _and(*filters: dict[str, Any]) -> dict[str, Any]:
    parts = [f for f in filters if f]
    return parts[0] if len(parts) == 1 else {"$and": parts} if parts else {}


_V1 = frozenset({1})


def payload_entries(payloads: dict[str, list[int]]) -> list[str]:
    """How a record stores declared payload versions: ``type@version`` strings (types hold dots, which
    MongoDB field names should not)."""
    return [f"{event_type}@{v}" for event_type, versions in payloads.items() for v in versions]


def _payloads(value: Any) -> Payloads | None:
    """The record's ``payloads`` as a lookup; entries that are not ``type@version`` are ignored."""
    if not isinstance(value, list):
        return None
    found: dict[str, set[int]] = {}
    for entry in value:
        event_type, _, version = entry.rpartition("@") if isinstance(entry, str) else ("", "", "")
        if event_type and version.isdigit():
            found.setdefault(event_type, set()).add(int(version))
    return {t: frozenset(v) for t, v in found.items()}


def _now() -> datetime:
    return datetime.now(UTC)


def _to_connection(doc: dict[str, Any]) -> Connection | None:
    """The record as a ``Connection``; None when a field is missing or of the wrong type."""
    cid, user, domain, stage = (
        doc.get("connectionId"),
        doc.get("userId"),
        doc.get("domainName"),
        doc.get("stage"),
    )
    connected = doc.get("connectedAt")
    if not (isinstance(cid, str) and cid and isinstance(user, str) and user):
        return None
    if not (isinstance(domain, str) and isinstance(stage, str)):
        return None
    if connected is not None:
        if not isinstance(connected, datetime):
            return None
        if connected.tzinfo is None:
            connected = connected.replace(tzinfo=UTC)
    declared = doc.get("payloads")
    return Connection(cid, user, domain, stage, connected, None if declared is None else _payloads(declared))


SkipHook = Callable[[dict[str, Any]], None]


class _UserLookups:
    """Merges the user-id lookups that concurrent events start in the same loop turn into one query.

    A receive of ten events starts ten fan-outs at once; one ``$in`` query for all their users costs
    about what one of the ten would, and each event still gets exactly its own users' records.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]], on_skip: SkipHook | None = None) -> None:
        self._col = collection
        self._on_skip = on_skip
        self._pending: list[tuple[list[str], asyncio.Future[list[dict[str, Any]]]]] = []
        self._queries: set[asyncio.Task[None]] = set()

    def find(self, users: list[str]) -> asyncio.Future[list[dict[str, Any]]]:
        """The live records of ``users`` (at most ``USER_CHUNK`` of them)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((users, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        group: list[tuple[list[str], asyncio.Future[list[dict[str, Any]]]]] = []
        size = 0
        for item in pending:
            if group and size + len(item[0]) > USER_CHUNK:
                self._start(group)
                group, size = [], 0
            group.append(item)
            size += len(item[0])
        self._start(group)

    def _start(self, group: list[tuple[list[str], asyncio.Future[list[dict[str, Any]]]]]) -> None:
        task = asyncio.create_task(self._query(group))
        self._queries.add(task)
        task.add_done_callback(self._queries.discard)

    async def _query(self, group: list[tuple[list[str], asyncio.Future[list[dict[str, Any]]]]]) -> None:
        try:
            users = list({user for wanted, _ in group for user in wanted})
            query = {"userId": {"$in": users}, "expiresAt": {"$gt": _now()}}
            docs = await self._col.find(query, _PROJECTION).to_list(None)
            by_user: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
            for doc in docs:
                user = doc.get("userId")
                if isinstance(user, str):
                    by_user[user].append(doc)
                elif self._on_skip is not None:  # e.g. an array of ids, which $in matches too
                    self._on_skip(doc)
            for wanted, future in group:
                if not future.done():
                    future.set_result([doc for user in wanted for doc in by_user.get(user, ())])
        except BaseException as exc:  # every waiter gets an answer, whatever happened
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise


class ConnectionStore:
    """Reads and writes connection records compatible with the ones the existing API writes."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], on_skip: SkipHook | None = None) -> None:
        self._col = collection
        self._users = _UserLookups(collection, on_skip)
        self._on_skip = on_skip  # told of every malformed record a lookup skips

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
        """The database of the records, where the lifecycle's other collections (tickets) live too."""
        return self._col.database

    def _connections(self, docs: Iterable[dict[str, Any]]) -> Iterable[Connection]:
        for doc in docs:
            conn = _to_connection(doc)
            if conn is not None:
                yield conn
            elif self._on_skip is not None:
                self._on_skip(doc)

    async def ensure_indexes(self) -> None:
        """Create the indexes the record shape needs; safe to call on every start."""
        await self._col.create_index([("connectionId", ASCENDING)], unique=True)
        await self._col.create_index([("userId", ASCENDING)])
        await self._col.create_index([("topics", ASCENDING)])
        await self._col.create_index([("bucket", ASCENDING)])
        await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)

    async def resolve(
        self, target: Target, shard: tuple[int, int] | None = None
    ) -> AsyncIterator[list[Connection]]:
        """Yield the live connections of a target in batches, each connection once; ``shard`` narrows it
        to the records in buckets ``[lo, hi)``."""
        now = _now()
        excluded = set(target.exclude_connection_ids)
        seen: set[str] = set()

        def fresh(docs: Iterable[dict[str, Any]]) -> list[Connection]:
            out = []
            for conn in self._connections(docs):
                cid = conn.connection_id
                if cid in excluded or cid in seen:
                    continue
                seen.add(cid)
                out.append(conn)
            return out

        if shard is not None:
            # The buckets are the selective part: expiry is checked here rather than in the query, so
            # no server can prefer the expiresAt index (every record matches it) over the buckets.
            async for batch in self._stream(_and(_scope(target), _buckets(shard)), _LIVE_PROJECTION):
                yield fresh(d for d in batch if _live(d, now))
            return
        if target.broadcast:
            async for batch in self._stream({"expiresAt": {"$gt": now}}):
                yield fresh(batch)
            return
        users = target.user_ids
        for start in range(0, len(users), USER_CHUNK):
            found = fresh(await self._users.find(users[start : start + USER_CHUNK]))
            if found:
                yield found
        if target.topics:
            async for batch in self._stream({"topics": {"$in": target.topics}, "expiresAt": {"$gt": now}}):
                if found := fresh(batch):
                    yield found
        if target.connection_ids:
            query = {"connectionId": {"$in": target.connection_ids}, "expiresAt": {"$gt": now}}
            if found := fresh(await self._col.find(query, _PROJECTION).to_list(None)):
                yield found

    async def _stream(
        self, query: dict[str, Any], projection: dict[str, int] = _PROJECTION
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The records matching ``query`` in batches of ``BATCH``, never loaded whole."""
        batch: list[dict[str, Any]] = []
        async for doc in self._col.find(query, projection, batch_size=BATCH):
            batch.append(doc)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def audience(self, target: Target, at_most: int) -> int:
        """About how many connections a broadcast or a topic target has, counted up to ``at_most``:
        a broadcast from the collection's metadata (no scan), a topic audience by its index."""
        if target.broadcast:
            return int(await self._col.estimated_document_count())
        query = {"topics": {"$in": target.topics}, "expiresAt": {"$gt": _now()}}
        return int(await self._col.count_documents(query, limit=at_most))

    async def by_ids(self, connection_ids: Iterable[str], target: Target) -> AsyncIterator[list[Connection]]:
        """Yield the live connections among ``connection_ids`` that ``target`` addresses (a remainder
        round), in batches. The target check means a connection list can only narrow an audience."""
        now = _now()
        excluded = set(target.exclude_connection_ids)
        ids = [c for c in dict.fromkeys(connection_ids) if c not in excluded]
        scope = _scope(target)
        for start in range(0, len(ids), USER_CHUNK):
            query = {"connectionId": {"$in": ids[start : start + USER_CHUNK]}, "expiresAt": {"$gt": now}}
            found = list(self._connections(await self._col.find(query | scope, _PROJECTION).to_list(None)))
            if found:
                yield found

    async def put(self, connection_id: str, user_id: str, domain_name: str, stage: str, ttl_s: int) -> None:
        """Store a new connection record (the ``$connect`` route)."""
        now = _now()
        await self._col.update_one(
            {"connectionId": connection_id},
            {
                "$set": {
                    "userId": user_id,
                    "bucket": bucket_of(connection_id),
                    "domainName": domain_name,
                    "stage": stage,
                    "connectedAt": now,
                    "lastSeenAt": now,
                    "expiresAt": now + timedelta(seconds=ttl_s),
                }
            },
            upsert=True,
        )

    async def touch(self, connection_id: str, ttl_s: int) -> str | None:
        """Refresh ``lastSeenAt``/``expiresAt`` of a live connection; its user id, None without a record."""
        now = _now()
        doc = await self._col.find_one_and_update(
            {"connectionId": connection_id},  # a frame proves the socket is open, even past expiresAt
            {"$set": {"lastSeenAt": now, "expiresAt": now + timedelta(seconds=ttl_s)}},
            projection={"_id": 0, "userId": 1},
        )
        user = doc.get("userId") if doc else None
        return user if isinstance(user, str) and user else None

    async def subscribe(self, connection_id: str, topics: list[str], cap: int) -> list[str] | None:
        """Add topics to a connection's interests unless that would make more than ``cap`` in total;
        the resulting list, or None when refused (or the connection has no record). Atomic: the size
        check and the addition are one update, so concurrent frames cannot pass the cap together."""
        doc = await self._col.find_one({"connectionId": connection_id}, {"_id": 0, "topics": 1})
        if doc is None:
            return None
        current = doc.get("topics")
        held: list[str] = list(current) if isinstance(current, list) else []
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
        return list(doc["topics"]) if doc is not None else None

    async def unsubscribe(self, connection_id: str, topics: list[str]) -> list[str]:
        """Remove topics from a connection's interests; the resulting list."""
        doc = await self._col.find_one_and_update(
            {"connectionId": connection_id},
            {"$pullAll": {"topics": topics}},
            projection={"_id": 0, "topics": 1},
            return_document=ReturnDocument.AFTER,
        )
        return list(doc.get("topics") or []) if doc is not None else []

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

    async def take_slot(self, connection_id: str, kind: str, window: int, limit: int) -> bool:
        """Count one frame of ``kind`` (``forward``, ``typing``, ``ack``) in the connection's current rate
        window (``window``: the window's number); False when ``limit`` frames already passed in it. Each
        step is one atomic update on the record (``<kind>Window``, ``<kind>Count``), so concurrent frames
        (several Lambda containers) cannot pass more than ``limit`` together."""
        field_window, field_count = f"{kind}Window", f"{kind}Count"
        count = ({"connectionId": connection_id, field_window: window, field_count: {"$lt": limit}},
                 {"$inc": {field_count: 1}})  # fmt: skip
        if (await self._col.update_one(*count)).matched_count:
            return True
        opened = await self._col.update_one(
            {"connectionId": connection_id, field_window: {"$ne": window}},
            {"$set": {field_window: window, field_count: 1}},
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
        ``connectedAt`` belongs to another connection and is kept."""
        query: dict[str, Any] = {"connectionId": conn.connection_id}
        if conn.connected_at is not None:
            query["connectedAt"] = {"$lte": conn.connected_at}
        result = await self._col.delete_one(query)
        return result.deleted_count > 0

    async def get(self, connection_id: str) -> dict[str, Any] | None:
        return await self._col.find_one({"connectionId": connection_id}, {"_id": 0})
