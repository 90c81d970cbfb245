"""Recent events, kept so a client that reconnects can get what it missed (docs/protocol.md, section 21).

One document per event in ``fanouthistory`` (``FANOUT_HISTORY_COLLECTION``), written by the worker that
receives the event, where the audience is known: its user ids, topics or broadcast flag, its ordering key
and ``seq``, and the client frame, serialized once. One write per event whatever its audience (a
per-user copy would cost a write per recipient on the hot path); the reads of a resume pay instead, through
the indexes on ``users``, ``topics`` and ``(key, seq)``. A TTL index drops a document
``FANOUT_HISTORY_WINDOW_S`` after it was written; ``until`` is when the event itself stops being worth
delivering, so an expired event is never replayed.

The write comes before the event's lookup, so no reconnect falls between the two: a client whose
``$connect`` came before the lookup read gets the event live, and one whose ``$connect`` came after it
finds the event here when it resumes (its resume follows its ``$connect``, which follows the write). The
posts wait for the one write, batched with the writes of the events received meanwhile. Running it
beside the lookup instead needed a second lookup per event for the connections made in between, which
doubled the reads of the hot path and made SecantusDB time out under the fault tests. A failed write is
logged and counted (``fanout_history_write_failures_total``) and never fails the delivery: a resume
that needed the event then gets a resync, or (an event without an ordering key) misses it. The shards
of a split audience are queued after the write too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeGuard

from pymongo import ASCENDING, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from fanout import sequence
from fanout.attributes import EVENT_ID
from fanout.coalesce import Coalescer
from fanout.config import Settings
from fanout.envelope import EVENT_TYPE_PATTERN, QueueBody
from fanout.logging import get_logger, short_id

log = get_logger("fanout.history")

#: Users recorded with one event; an event for more is kept as ``wide`` (a resume that meets one cannot
#: tell whether it was the client's, so it asks the client to refetch) and the document stays small.
MAX_USERS = 10_000
#: A resume by event id replays from this long before that event was recorded: an event recorded a
#: little earlier may still have been on its way (retries, a remainder round) when the client left.
OVERLAP_S = 10.0
_DUPLICATE_KEY = 11000
WRITE_BATCH = 100  # history documents per insert_many at most
#: An event type as the envelope accepts one. A kept document's type is asked for its policy and its
#: flag, which split it into every dotted prefix: quadratic in a hostile one's length.
_EVENT_TYPE = re.compile(EVENT_TYPE_PATTERN)
_PLAN_FIELDS = {"_id": 1, "type": 1, "at": 1, "key": 1, "seq": 1, "wide": 1, "until": 1}


class KeptFrame(NamedTuple):
    """A kept event as a replay posts it."""

    id: str
    type: str
    frame: bytes
    version: int = 1  # the payload's version (meta.payloadVersion)


@dataclass(frozen=True, slots=True)
class Kept:
    """A kept event as a resume plans with it (without its frame)."""

    id: str
    at: datetime
    key: str | None = None
    seq: int | None = None
    wide: bool = False
    until: datetime | None = None  # past it, the event is not replayed
    type: str = ""


def document(body: QueueBody, expires_at: float, now: datetime, window_s: int) -> dict[str, Any]:
    """The history document of an event: who it was for, its key and seq, its frame."""
    target = body.target
    doc: dict[str, Any] = {"_id": body.id, "type": body.type, "at": now}
    if len(target.user_ids) > MAX_USERS:
        doc["wide"] = True
    else:
        doc["users"] = target.user_ids
    if target.topics:
        doc["topics"] = target.topics
    if target.exclude_connection_ids:  # the tab that caused it: a resume naming it gets no echo
        doc["exclude"] = target.exclude_connection_ids
    if target.broadcast:
        doc["broadcast"] = True
    if body.meta.ordering_key is not None:
        doc["key"] = body.meta.ordering_key
    if body.meta.seq is not None:
        doc["seq"] = body.meta.seq
    if body.payload_version != 1:
        doc["version"] = body.payload_version  # a replay skips a connection that does not speak it
    doc["frame"] = body.client_frame.decode()
    doc["until"] = datetime.fromtimestamp(min(expires_at, 253402300799), UTC)  # year 9999 at most
    doc["expiresAt"] = now + timedelta(seconds=window_s)
    return doc


def audience(user_id: str, topics: Iterable[str], *, wide: bool = True) -> dict[str, Any]:
    """The filter of what a connection may get back: its user's events, its topics' and broadcasts
    (and, for planning, the wide events that may have been its user's)."""
    ways: list[dict[str, Any]] = [{"users": user_id}, {"broadcast": True}]
    if topics := list(topics):
        ways.append({"topics": {"$in": topics}})
    if wide:
        ways.append({"wide": True})
    return {"$or": ways}


def _kept_now() -> dict[str, Any]:
    # MongoDB's TTL monitor runs about once a minute: the window is enforced on every read too.
    return {"expiresAt": {"$gt": datetime.now(UTC)}}


def _event_type(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= 128 and _EVENT_TYPE.fullmatch(value) is not None


def _kept(doc: dict[str, Any]) -> Kept | None:
    """A document as a resume plans with it; None (logged) when its ``_id`` is no event id (the worker
    refuses a replay naming one, whole), its type no event type, or its ``at`` or ``until`` no date:
    another writer's or a corrupt document, skipped like one never kept (the worker's replay never posts
    one whose ``until`` or type is not one either)."""
    event_id, at, until = doc.get("_id"), doc.get("at"), doc.get("until")
    key, seq, event_type = doc.get("key"), doc.get("seq"), doc.get("type")
    if (
        not (isinstance(event_id, str) and EVENT_ID.fullmatch(event_id))
        or not _event_type(event_type)
        or not isinstance(at, datetime)
        or not (until is None or isinstance(until, datetime))
    ):
        log.warning("history_document_invalid", document=short_id(str(event_id)))
        return None
    return Kept(
        event_id,
        at,
        key if isinstance(key, str) else None,
        seq if isinstance(seq, int) else None,
        doc.get("wide") is True,
        until,
        event_type,
    )


def _usable(docs: list[dict[str, Any]]) -> list[Kept]:
    return [k for d in docs if (k := _kept(d)) is not None]


class History:
    """Writes (worker) and reads (lifecycle, worker replays) of the kept events."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], settings: Settings) -> None:
        # w=1: a write lost in a failover only turns a replay into a resync, and every event's posts wait
        # for this write, so it should cost one round trip, not a majority's.
        self._col: AsyncCollection[dict[str, Any]] = db.get_collection(
            settings.history_collection, write_concern=WriteConcern(w=1)
        )
        self._sequences: AsyncCollection[dict[str, Any]] = db[settings.sequences_collection]
        self.window_s = settings.history_window_s
        self.max_replay = settings.history_max_replay
        self._writes: Coalescer[dict[str, Any], None] = Coalescer(self.write_many, most=WRITE_BATCH)

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    async def ensure_indexes(self) -> None:
        """The TTL index and the indexes resumes read through; safe to call on every start."""
        await self._col.create_index([("expiresAt", ASCENDING)], expireAfterSeconds=0)
        await self._col.create_index([("users", ASCENDING), ("at", ASCENDING)])
        await self._col.create_index([("topics", ASCENDING), ("at", ASCENDING)])
        await self._col.create_index([("key", ASCENDING), ("seq", ASCENDING)])
        await self._col.create_index([("at", ASCENDING)])

    def record(self, body: QueueBody, expires_at: float) -> asyncio.Future[None]:
        """Keep an event. The records of concurrent events are written together by one ``insert_many``
        (``coalesce.py``); an event kept already (received twice) is left as it is."""
        if not self.enabled:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future
        return self._writes.submit(self.document(body, expires_at))

    def document(self, body: QueueBody, expires_at: float) -> dict[str, Any]:
        """The history document of an event kept now."""
        return document(body, expires_at, datetime.now(UTC), self.window_s)

    async def write_many(self, docs: list[dict[str, Any]]) -> list[BaseException | None]:
        """Keep events in one ``insert_many`` (at most ``WRITE_BATCH``): a refused document fails only its
        event (its answer is the error); a duplicate was kept already."""
        try:
            await self._col.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            answers: list[BaseException | None] = [None] * len(docs)
            for e in exc.details.get("writeErrors", []):
                if e.get("code") != _DUPLICATE_KEY and 0 <= e.get("index", -1) < len(docs):
                    answers[e["index"]] = exc
            return answers
        return [None] * len(docs)

    async def recorded_at(self, event_id: str, who: dict[str, Any]) -> datetime | None:
        """When an event of ``who``'s was kept; None once the window has dropped it, or when it never was
        (another user's event id reads as unknown: a resume must not tell that it exists)."""
        doc = await self._col.find_one({"_id": event_id} | _kept_now() | who, {"_id": 0, "at": 1})
        at = doc.get("at") if doc else None
        return at if isinstance(at, datetime) else None

    async def since(
        self, at: datetime, who: dict[str, Any], limit: int, mine: list[str] | None = None
    ) -> list[Kept]:
        """Kept events for ``who`` recorded from ``OVERLAP_S`` before ``at``, oldest first, less those
        that excluded one of the connections ``mine`` (the resuming tab's own changes)."""
        try:
            start = at - timedelta(seconds=OVERLAP_S)
        except OverflowError:  # a (corrupt) document kept in the first seconds of year 1
            start = at
        query = {"at": {"$gte": start}} | _kept_now() | who
        if mine:
            query["exclude"] = {"$nin": mine}
        cursor = self._col.find(query, _PLAN_FIELDS).sort([("at", ASCENDING), ("_id", ASCENDING)])
        return _usable(await cursor.limit(limit).to_list(None))

    async def of_key(self, key: str, from_seq: int, who: dict[str, Any], limit: int) -> list[Kept]:
        """Kept events of ``key`` for ``who`` from ``seq`` ``from_seq`` on, in ``seq`` order."""
        query = {"key": key, "seq": {"$gte": from_seq}} | _kept_now() | who
        cursor = self._col.find(query, _PLAN_FIELDS).sort("seq", ASCENDING)
        return _usable(await cursor.limit(limit).to_list(None))

    async def latest(self, keys: Iterable[str]) -> dict[str, int]:
        """The last ``seq`` allocated for each key."""
        return await sequence.latest(self._sequences, keys)

    async def frames(self, event_ids: list[str], who: dict[str, Any]) -> list[KeptFrame]:
        """The kept events among ``event_ids`` that ``who`` may get and that have not expired, in the
        order of ``event_ids``."""
        query = {"_id": {"$in": event_ids}, "until": {"$gt": datetime.now(UTC)}} | _kept_now() | who
        docs = await self._col.find(query, {"type": 1, "frame": 1, "version": 1}).to_list(None)
        found: dict[str, KeptFrame] = {}
        for d in docs:
            version, event_type = d.get("version", 1), d.get("type")
            if isinstance(d.get("frame"), str) and isinstance(version, int) and _event_type(event_type):
                found[d["_id"]] = KeptFrame(d["_id"], event_type, d["frame"].encode(), version)
        return [found[i] for i in event_ids if i in found]
