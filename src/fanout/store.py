"""The connection store: live WebSocket connections per user in MongoDB (``websocketconnections``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from fanout.envelope import Target

USER_CHUNK = 500  # user ids per $in query, so one huge audience is many modest queries
_PROJECTION = {"_id": 0, "connectionId": 1, "userId": 1, "domainName": 1, "stage": 1, "connectedAt": 1}


@dataclass(frozen=True, slots=True)
class Connection:
    """One live WebSocket connection as the worker needs it."""

    connection_id: str
    user_id: str
    domain_name: str
    stage: str
    connected_at: datetime | None

    @property
    def endpoint(self) -> str:
        """The management-API endpoint key: ``{domainName}/{stage}``."""
        return f"{self.domain_name}/{self.stage}"


def _now() -> datetime:
    return datetime.now(UTC)


def _to_connection(doc: dict[str, Any]) -> Connection:
    connected = doc.get("connectedAt")
    if connected is not None and connected.tzinfo is None:
        connected = connected.replace(tzinfo=UTC)
    return Connection(doc["connectionId"], doc["userId"], doc["domainName"], doc["stage"], connected)


class _UserLookups:
    """Merges the user-id lookups that concurrent events start in the same loop turn into one query.

    A receive of ten events starts ten fan-outs at once; one ``$in`` query for all their users costs
    about what one of the ten would, and each event still gets exactly its own users' records.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection
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
        users = list({user for wanted, _ in group for user in wanted})
        query = {"userId": {"$in": users}, "expiresAt": {"$gt": _now()}}
        try:
            docs = await self._col.find(query, _PROJECTION).to_list(None)
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        by_user: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in docs:
            by_user[doc["userId"]].append(doc)
        for wanted, future in group:
            if not future.done():
                future.set_result([doc for user in wanted for doc in by_user.get(user, ())])


class ConnectionStore:
    """Reads and writes connection records compatible with the ones the existing API writes."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self._col = collection
        self._users = _UserLookups(collection)

    @classmethod
    def from_client(
        cls, client: AsyncMongoClient[dict[str, Any]], db: str, collection: str
    ) -> ConnectionStore:
        return cls(client[db][collection])

    async def ensure_indexes(self) -> None:
        """Create the indexes the record shape needs; safe to call on every start."""
        await self._col.create_index([("connectionId", ASCENDING)], unique=True)
        await self._col.create_index([("userId", ASCENDING)])
        await self._col.create_index([("topics", ASCENDING)])
        await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)

    async def resolve(self, target: Target) -> AsyncIterator[list[Connection]]:
        """Yield the live connections of a target in batches, each connection once."""
        now = _now()
        excluded = set(target.exclude_connection_ids)
        seen: set[str] = set()

        def fresh(docs: Iterable[dict[str, Any]]) -> list[Connection]:
            out = []
            for doc in docs:
                cid = doc["connectionId"]
                if cid in excluded or cid in seen:
                    continue
                seen.add(cid)
                out.append(_to_connection(doc))
            return out

        if target.broadcast:
            cursor = self._col.find({"expiresAt": {"$gt": now}}, _PROJECTION, batch_size=1000)
            batch: list[dict[str, Any]] = []
            async for doc in cursor:
                batch.append(doc)
                if len(batch) >= 1000:
                    yield fresh(batch)
                    batch = []
            if batch:
                yield fresh(batch)
            return
        users = target.user_ids
        for start in range(0, len(users), USER_CHUNK):
            found = fresh(await self._users.find(users[start : start + USER_CHUNK]))
            if found:
                yield found
        if target.topics:
            query = {"topics": {"$in": target.topics}, "expiresAt": {"$gt": now}}
            found = fresh(await self._col.find(query, _PROJECTION).to_list(None))
            if found:
                yield found

    async def by_ids(self, connection_ids: list[str]) -> AsyncIterator[list[Connection]]:
        """Yield the live connections among ``connection_ids`` (a remainder round), in batches."""
        now = _now()
        for start in range(0, len(connection_ids), USER_CHUNK):
            query = {
                "connectionId": {"$in": connection_ids[start : start + USER_CHUNK]},
                "expiresAt": {"$gt": now},
            }
            found = [_to_connection(d) for d in await self._col.find(query, _PROJECTION).to_list(None)]
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
                    "domainName": domain_name,
                    "stage": stage,
                    "connectedAt": now,
                    "lastSeenAt": now,
                    "expiresAt": now + timedelta(seconds=ttl_s),
                }
            },
            upsert=True,
        )

    async def touch(self, connection_id: str, ttl_s: int) -> bool:
        """Refresh ``lastSeenAt``/``expiresAt`` of a live connection; False when it has no record."""
        now = _now()
        result = await self._col.update_one(
            {"connectionId": connection_id},
            {"$set": {"lastSeenAt": now, "expiresAt": now + timedelta(seconds=ttl_s)}},
        )
        return result.matched_count > 0

    async def subscribe(self, connection_id: str, topics: list[str]) -> bool:
        """Add topics to a connection's interests; False when it has no record."""
        result = await self._col.update_one(
            {"connectionId": connection_id}, {"$addToSet": {"topics": {"$each": topics}}}
        )
        return result.matched_count > 0

    async def remove(self, connection_id: str) -> bool:
        """Delete a record (the ``$disconnect`` route)."""
        return (await self._col.delete_one({"connectionId": connection_id})).deleted_count > 0

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
