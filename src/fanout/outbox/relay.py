"""The relay: moves outbox entries to SQS in insertion order, marks them relayed, one relay at a time.

Read ``Relay.run`` top to bottom. While it holds the lease (``lease``), the relay reads pending entries
oldest first, sends them in batches (up to 10 entries and 256 KiB, one batch after the other) and marks
each batch relayed once SQS has it. Killed between a send and its mark, the next relay sends that one
batch again, with the same event ids; nothing else is sent twice.

An entry SQS refuses for its content (too large for the queue, text it refuses) is marked relayed with
SQS's code, so the entries after it leave. A batch SQS refuses whole (its shape, or one body) goes again
one entry at a time. Any other failure, a 400 that is the queue's included (a missing queue, a KMS grant),
keeps the entries pending and is tried again with backoff, logged as ``relay_failed``.

It learns of new entries from a change stream on the outbox (inserts only: an aborted transaction's
entry never shows) and looks anyway every ``STREAM_POLL_S``. Where the server refuses change streams
(a standalone mongod, some MongoDB-compatible services) it polls every ``FANOUT_RELAY_POLL_S`` instead.

On a FIFO queue each entry names its message group, the body's ``meta.orderingKey`` (else its event id),
and its deduplication id, the event id, as the publishers do: a batch sent again after a crash is then
dropped by SQS within its five-minute deduplication window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

from fanout import queues
from fanout.catalog import metric_label
from fanout.config import Settings, aio_session
from fanout.health import STALL_S, health_app, serve
from fanout.logging import get_logger
from fanout.outbox.box import ORDER, PENDING, indexes
from fanout.outbox.lease import Lease
from fanout.outbox.metrics import OutboxMetrics
from fanout.publish.batch import Entry, split
from fanout.publish.send import asend_batch
from fanout.store import mongo_client
from fanout.tracebacks import describe

log = get_logger("fanout.relay")

PAGE = 100  # entries read per query
STREAM_POLL_S = 10.0  # with a change stream: look anyway this often (a lost wake-up costs at most this)
COUNT_CAP = 1_000_000  # count pending entries up to this many
#: Server answers meaning "no change streams here": IllegalOperation (20), CommandNotSupported (115),
#: an unknown $changeStream stage (40324), and a standalone server (40573).
UNSUPPORTED = frozenset({20, 115, 40324, 40573})
#: An index of that name exists with other options (IndexOptionsConflict 85, IndexKeySpecsConflict 86):
#: the outbox's TTL index made with another ``FANOUT_OUTBOX_RETENTION_S``.
INDEX_CONFLICT = frozenset({85, 86})


def fifo_ids(doc: dict[str, Any]) -> tuple[str, str]:
    """An outbox entry's FIFO (message group, deduplication id): the body's ``meta.orderingKey``, else the
    event id; and the event id. Entries written by other languages carry no more than the body."""
    event_id = str(doc.get("eventId") or doc["_id"])
    try:
        meta = json.loads(doc["body"]).get("meta")
    except (ValueError, AttributeError, TypeError, RecursionError):  # RecursionError: nested past the parser
        meta = None
    key = meta.get("orderingKey") if isinstance(meta, dict) else None
    return (key if isinstance(key, str) and key else event_id), event_id


def entry_of(doc: dict[str, Any]) -> Entry:
    """An outbox entry as a batch entry: its event id, metric label, body and size, and its FIFO group."""
    group, event_id = fifo_ids(doc)
    body = str(doc["body"])
    size = doc.get("size") or len(body.encode())
    return Entry(event_id, metric_label(str(doc.get("type", ""))), body, size, 0.0, group)


def _well_formed(doc: dict[str, Any]) -> bool:
    """An entry the relay can send: a text body, and a size (when written) that is a byte count. Another
    writer's entry without them would fail every batch it falls in, and hold back every entry after it."""
    size = doc.get("size")
    return isinstance(doc.get("body"), str) and (size is None or (type(size) is int and size >= 0))


class Retry(Exception):
    """SQS did not take every entry of a batch: send the rest after a pause."""


class Relay:
    """One relay of the outbox ``FANOUT_OUTBOX_DB.FANOUT_OUTBOX_COLLECTION``; clients are the caller's."""

    def __init__(
        self,
        settings: Settings,
        mongo: AsyncMongoClient[dict[str, Any]],
        sqs: Any,
        registry: CollectorRegistry,
        *,
        owner: str | None = None,
    ) -> None:
        s = self.settings = settings
        db = mongo[s.outbox_db or s.mongo_db]
        self.outbox = db[s.outbox_collection]
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease = Lease(
            db[f"{s.outbox_collection}_lease"], s.outbox_collection, self.owner, s.relay_lease_s
        )
        self.sqs = sqs
        self.metrics = OutboxMetrics(registry)
        self.following = False  # a change stream is open
        self.healthy = False  # MongoDB and SQS answered on the last round
        self.heartbeat = time.monotonic()
        self.relayed = 0
        self._wake = asyncio.Event()
        self._url = ""

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set (or the task is cancelled), then give the lease up."""
        await self._prepare(stop)
        follower = asyncio.create_task(self._follow())
        delay = 0.5
        try:
            while not stop.is_set():
                self.heartbeat = time.monotonic()
                try:
                    held = await self.lease.keep()
                    self.metrics.leader.set(1 if held else 0)
                    if held:
                        await self._pump(stop)
                    await self._observe()
                    self.healthy, delay = True, 0.5
                except Exception as exc:  # MongoDB, SQS or a partial batch: log, pause, try again
                    self.healthy = False
                    await self._failed(exc, stop, delay)
                    delay = min(delay * 2, self.lease.ttl_s / 3)  # never so long that the lease lapses
                    continue
                await self._idle(stop)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            self.metrics.leader.set(0)
            with contextlib.suppress(PyMongoError):
                await self.lease.release()
            log.info("relay_stopped", relayed=self.relayed, owner=self.owner)

    async def _prepare(self, stop: asyncio.Event) -> None:
        """Indexes and the queue URL, retried with backoff until both answer (or stop)."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self._indexes()
                self._url = await queues.aurl(self.sqs, self.settings)
                log.info("relay_started", outbox=self.settings.outbox_collection, owner=self.owner)
                return
            except Exception as exc:
                await self._failed(exc, stop, delay)
                delay = min(delay * 2, 10)

    async def _indexes(self) -> None:
        """The outbox's indexes. A retention other than the one the TTL index was made with is applied to
        it (``collMod``): creating it again with other options fails, and the relay never started."""
        retention_s = self.settings.outbox_retention_s
        try:
            await self.outbox.create_indexes(indexes(retention_s))
        except OperationFailure as exc:
            if exc.code not in INDEX_CONFLICT:
                raise
            ttl = {"name": "relayed_ttl", "expireAfterSeconds": retention_s}
            await self.outbox.database.command("collMod", self.outbox.name, index=ttl)
            log.info("outbox_retention_changed", retention_s=retention_s)
            await self.outbox.create_indexes(indexes(retention_s))

    async def _failed(self, exc: Exception, stop: asyncio.Event, delay: float) -> None:
        # describe: a pymongo or botocore message can quote an entry's key or body
        log.warning("relay_failed", error=type(exc).__name__, detail=describe(exc), retry_in=round(delay, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    # ---- sending

    async def _pump(self, stop: asyncio.Event) -> None:
        """Send pending entries, oldest first, while the lease holds; stop between batches."""
        self._wake.clear()  # a change from here on means another look
        sent = 0
        while not stop.is_set():
            docs = (
                await self.outbox.find(PENDING, {"body": 1, "size": 1, "type": 1, "eventId": 1})
                .sort(ORDER)
                .limit(PAGE)
                .to_list()
            )
            if not docs:
                break
            for doc in [d for d in docs if not _well_formed(d)]:  # never sendable: marked, so the rest leave
                docs.remove(doc)
                await self._refuse(doc, "malformed_entry")
            for batch in split(docs, lambda d: d.get("size") or len(d["body"].encode())):
                if stop.is_set() or not await self.lease.keep():
                    return  # never start a batch without the lease
                sent += await self._send(batch)
        if sent:
            log.info("outbox_relayed", count=sent)

    async def _send(self, batch: list[dict[str, Any]]) -> int:
        """One call to SQS (one per entry when SQS refuses the batch as such), then the marks; raises
        ``Retry`` when some entries must go again, and the call's error when none is known sent. Only an
        entry SQS refuses for its content is marked refused, so the entries after it still leave; a
        refusal that is the queue's (a missing queue, a KMS grant) keeps every entry for the next try."""
        entries = [entry_of(doc) for doc in batch]
        docs = {id(entry): doc for entry, doc in zip(entries, batch, strict=True)}
        # No call outlives the lease (botocore's retries take up to a minute): once it may have lapsed,
        # another relay may send, and this one's late retries would interleave with its batches. Entries
        # sent one by one before the cut are marked below, so the next round does not send them again.
        result = await asend_batch(self.sqs, self._url, entries, within_s=self.lease.left_s())
        now = datetime.now(UTC)
        sent = [docs[id(entry)] for entry in result.sent]
        if sent:
            ids = [d["_id"] for d in sent]
            await self.outbox.update_many({"_id": {"$in": ids}}, {"$set": {"relayedAt": now}})
        for entry, code in result.refused:
            await self._refuse(docs[id(entry)], code, now)
        for entry in result.sent:
            self.metrics.relayed.labels(entry.label).inc()
        self.relayed += len(sent)
        if result.retry:
            raise Retry(f"{len(result.retry)} of {len(batch)} entries not taken ({result.why})")
        return len(sent)

    async def _refuse(self, doc: dict[str, Any], code: str, now: datetime | None = None) -> None:
        """Mark an entry relayed with the reason it never will be, so the entries after it still leave."""
        mark = {"$set": {"relayedAt": now or datetime.now(UTC), "error": code}}
        await self.outbox.update_one({"_id": doc["_id"]}, mark)
        self.metrics.refused.labels(metric_label(str(doc.get("type", "")))).inc()
        event_id = doc.get("eventId")
        log.error("outbox_entry_refused", event_id=event_id if isinstance(event_id, str) else None, code=code)

    async def _observe(self) -> None:
        """Lag (age of the oldest pending entry) and pending entries, for every relay."""
        oldest = await self.outbox.find_one(PENDING, {"createdAt": 1}, sort=ORDER)
        lag = 0.0
        if oldest is not None and isinstance(oldest.get("createdAt"), datetime):
            created = oldest["createdAt"]
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            lag = max(0.0, (datetime.now(UTC) - created).total_seconds())
        self.metrics.lag.set(lag)
        self.metrics.pending.set(await self.outbox.count_documents(PENDING, limit=COUNT_CAP))

    # ---- waiting

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until a change, ``stop``, the next look or the lease's renewal, whichever comes first."""
        look = STREAM_POLL_S if self.following else self.settings.relay_poll_s
        timeout = min(look, self.lease.ttl_s / 3)
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _follow(self) -> None:
        """Wake the relay on every insert into the outbox; give up for good where change streams are
        unsupported, and open the stream again after any other error."""
        delay = 1.0
        while True:
            try:
                stream = await self.outbox.watch(
                    [{"$match": {"operationType": "insert"}}], max_await_time_ms=1000
                )
                async with stream:
                    if not self.following:
                        log.info("relay_following_changes", outbox=self.settings.outbox_collection)
                    self.following = True
                    self._wake.set()  # catch up on what came before the stream opened
                    delay = 1.0
                    while stream.alive:
                        if await stream.try_next() is not None:
                            self._wake.set()
            except OperationFailure as exc:
                self.following = False
                if exc.code in UNSUPPORTED:
                    log.info("relay_polling", reason="no change streams", code=exc.code,
                             every_s=self.settings.relay_poll_s)  # fmt: skip
                    return
                log.warning("change_stream_failed", error=type(exc).__name__, code=exc.code)
            except PyMongoError as exc:
                self.following = False
                log.warning("change_stream_failed", error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def main(settings: Settings) -> int:
    """``fanout relay``: one relay with its own clients and ``/metrics``, ``/healthz``, ``/readyz`` on
    the metrics port, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = CollectorRegistry()
    config = AioConfig(connect_timeout=5, read_timeout=15, retries={"max_attempts": 3, "mode": "standard"})
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            aio_session(settings).create_client("sqs", **settings.aws_client_kwargs(config))
        )
        mongo = mongo_client(settings)
        stack.push_async_callback(mongo.close)
        relay = Relay(settings, mongo, sqs, registry)

        def live() -> tuple[bool, dict[str, Any]]:
            ok = time.monotonic() - relay.heartbeat <= STALL_S
            return ok, {"ok": ok}

        def ready() -> tuple[bool, dict[str, Any]]:
            state = {"ready": relay.healthy, "leader": relay.lease.held, "following": relay.following}
            return relay.healthy, state

        app = health_app(lambda: registry, live, ready)
        stack.push_async_callback((await serve(app, settings.metrics_host, settings.metrics_port)).cleanup)
        await relay.run(stop)
    return 0
