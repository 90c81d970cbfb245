"""Who an event reaches: the live connections of a target (users, topics, single connections, everyone,
or one shard of them), streamed in batches and never loaded whole; each connection found once."""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from fanout.coalesce import Coalescer
from fanout.envelope import Target
from fanout.store.records import (
    BUCKETS,
    PROJECTION,
    Connection,
    SkipHook,
    live,
    now_utc,
    to_connection,
)

USER_CHUNK = 500  # user ids per $in query, so one huge audience is many modest queries
BATCH = 1000  # records per batch when streaming a broadcast, a topic or a shard
_LIVE_PROJECTION = PROJECTION | {"expiresAt": 1, "bucket": 1}


def _scope(target: Target) -> dict[str, Any]:
    """The filter a target puts on records: none for a broadcast, else its users or its topics."""
    if target.broadcast:
        return {}
    ways: list[dict[str, Any]] = [{"userId": {"$in": target.user_ids}}, {"topics": {"$in": target.topics}}]
    if target.connection_ids:
        ways.append({"connectionId": {"$in": target.connection_ids}})
    return {"$or": ways}


def _buckets(shard: tuple[int, int]) -> dict[str, Any]:
    """The filter of a shard: buckets ``[lo, hi)`` as an ``$in`` (an index lookup on any server); the
    last shard also takes records without a bucket (written before buckets). A record with another
    writer's bucket (null, text, a number outside 0-1023) is in no shard: matching "any other value"
    is a scan of every record on some servers (24 s for 20,000 on SecantusDB, against 1.3 s)."""
    lo, hi = shard
    wanted = {"bucket": {"$in": list(range(lo, hi))}}
    return {"$or": [wanted, {"bucket": {"$exists": False}}]} if hi >= BUCKETS else wanted


def _owned(doc: dict[str, Any]) -> bool:
    """Whether a record a shard's filter matched is the shard's: an array bucket matches the ``$in`` of
    every shard holding one of its numbers, so no shard takes it (it would be posted once per shard)."""
    return not isinstance(doc.get("bucket"), list)


def _and(*filters: dict[str, Any]) -> dict[str, Any]:
    parts = [f for f in filters if f]
    return parts[0] if len(parts) == 1 else {"$and": parts} if parts else {}


class _UserLookups:
    """Merges the user-id lookups of concurrent events into one ``$in`` query (``coalesce.py``).

    A receive of ten events starts ten fan-outs at once; one query for all their users costs about what
    one of the ten would, and each event still gets exactly its own users' records.
    """

    def __init__(self, collection: AsyncCollection[dict[str, Any]], on_skip: SkipHook | None = None) -> None:
        self._col = collection
        self._on_skip = on_skip
        self._lookups: Coalescer[list[str], list[dict[str, Any]]] = Coalescer(
            self.query, most=USER_CHUNK, weigh=len
        )

    def find(self, users: list[str]) -> asyncio.Future[list[dict[str, Any]]]:
        """The live records of ``users`` (at most ``USER_CHUNK`` of them)."""
        return self._lookups.submit(users)

    async def query(self, wanted: list[list[str]]) -> list[list[dict[str, Any]]]:
        """The live records of each list of users, in one query for all (``USER_CHUNK`` users at most)."""
        users = list({user for some in wanted for user in some})
        query = {"userId": {"$in": users}, "expiresAt": {"$gt": now_utc()}}
        docs = await self._col.find(query, PROJECTION).to_list(None)
        by_user: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for doc in docs:
            user = doc.get("userId")
            if isinstance(user, str):
                by_user[user].append(doc)
            elif self._on_skip is not None:  # e.g. an array of ids, which $in matches too
                self._on_skip(doc)
        return [[doc for user in some for doc in by_user.get(user, ())] for some in wanted]


class Resolver:
    """The reads of a fan-out on the records of one collection; ``ConnectionStore`` adds the writes."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]], on_skip: SkipHook | None = None) -> None:
        self._col = collection
        self._users = _UserLookups(collection, on_skip)
        self._on_skip = on_skip  # told of every malformed record a lookup skips

    def _connections(self, docs: Iterable[dict[str, Any]]) -> Iterable[Connection]:
        for doc in docs:
            conn = to_connection(doc)
            if conn is not None:
                yield conn
            elif self._on_skip is not None:
                self._on_skip(doc)

    async def find_users(self, wanted: list[list[str]]) -> list[list[dict[str, Any]]]:
        """The live records of each list of users (``USER_CHUNK`` users in all at most), in one query, for
        the events whose lookups a caller merged itself (``of_users``)."""
        return await self._users.query(wanted)

    def of_users(self, found: list[dict[str, Any]], target: Target) -> list[Connection]:
        """The connections of a users-only ``target`` among the records ``find_users`` read for it: what
        ``resolve`` yields for it, without a query of its own."""
        return self._fresh(found, set(target.exclude_connection_ids), set())

    def _fresh(self, docs: Iterable[dict[str, Any]], excluded: set[str], seen: set[str]) -> list[Connection]:
        """The well-formed connections among ``docs`` not excluded nor seen before (added to ``seen``)."""
        out = []
        for conn in self._connections(docs):
            cid = conn.connection_id
            if cid in excluded or cid in seen:
                continue
            seen.add(cid)
            out.append(conn)
        return out

    async def resolve(
        self, target: Target, shard: tuple[int, int] | None = None
    ) -> AsyncIterator[list[Connection]]:
        """Yield the live connections of a target in batches, each connection once; ``shard`` narrows it
        to the records in buckets ``[lo, hi)``."""
        now = now_utc()
        excluded = set(target.exclude_connection_ids)
        seen: set[str] = set()
        fresh = functools.partial(self._fresh, excluded=excluded, seen=seen)

        if shard is not None:
            # The buckets are the selective part: expiry is checked here rather than in the query, so
            # no server can prefer the expiresAt index (every record matches it) over the buckets.
            async for batch in self._stream(_and(_scope(target), _buckets(shard)), _LIVE_PROJECTION):
                if self._on_skip is not None:
                    for doc in batch:
                        if not _owned(doc):
                            self._on_skip(doc)
                yield fresh(d for d in batch if live(d, now) and _owned(d))
            return
        if target.broadcast:
            async for batch in self._stream({"expiresAt": {"$gt": now}}):
                yield fresh(batch)
            return
        users = target.user_ids
        for start in range(0, len(users), USER_CHUNK):
            if mine := fresh(await self._users.find(users[start : start + USER_CHUNK])):
                yield mine
        if target.topics:
            query = {"topics": {"$in": target.topics}, "expiresAt": {"$gt": now}}
            async for batch in self._stream(query):
                if mine := fresh(batch):
                    yield mine
        if target.connection_ids:
            query = {"connectionId": {"$in": target.connection_ids}, "expiresAt": {"$gt": now}}
            if mine := fresh(await self._col.find(query, PROJECTION).to_list(None)):
                yield mine

    async def _stream(
        self, query: dict[str, Any], projection: dict[str, int] = PROJECTION
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
        query = {"topics": {"$in": target.topics}, "expiresAt": {"$gt": now_utc()}}
        return int(await self._col.count_documents(query, limit=at_most))

    async def by_ids(self, connection_ids: Iterable[str], target: Target) -> AsyncIterator[list[Connection]]:
        """Yield the live connections among ``connection_ids`` that ``target`` addresses (a remainder
        round), in batches. The target check means a connection list can only narrow an audience."""
        now = now_utc()
        excluded = set(target.exclude_connection_ids)
        ids = [c for c in dict.fromkeys(connection_ids) if c not in excluded]
        scope = _scope(target)
        for start in range(0, len(ids), USER_CHUNK):
            query = {"connectionId": {"$in": ids[start : start + USER_CHUNK]}, "expiresAt": {"$gt": now}}
            found = list(self._connections(await self._col.find(query | scope, PROJECTION).to_list(None)))
            if found:
                yield found
