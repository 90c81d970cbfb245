"""The broadcast phase: one ``system.notice`` to every connection record, virtual ones included.

This machine cannot hold 100,000 sockets (a 20,000 file limit, about 28,000 local ports), so the phase
writes connection records whose ids start with ``virt.``: the gateway emulator answers a post to one
with 200 and counts it as ``virtual``, with no socket. The records are written as ``store.put`` writes
them, ``bucket`` included, so the worker shards the broadcast as it would any other. The clients' own
connections get the broadcast too, as real frames.

The phase times the broadcast from its send until the emulator and the clients have counted every
post, samples the worker's RSS, and meanwhile publishes a ``notification.new`` to one client every
``NOTIFY_EVERY_S``: their publish-to-received latency is what a broadcast does to small events.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from fanout.bench.phases import Feed
from fanout.bench.proc import cpu_seconds, machine_busy_seconds, rss_mb
from fanout.bench.results import Broadcast, Percentiles, Rss
from fanout.bench.rig import Rig
from fanout.local.emulator import VIRTUAL_PREFIX
from fanout.publish import build_event
from fanout.store import bucket_of

BROADCAST_TYPE = "system.notice"
NOTIFY_TYPE = "notification.new"
NOTIFY_EVERY_S = 0.2
RSS_EVERY_S = 0.5
POLL_S = 0.1
STALL_S = 60.0  # give up when no post was counted for this long
INSERT_CHUNK = 5000
RECORD_TTL_S = 4 * 3600


def virtual_records(
    n: int, domain_name: str, stage: str, now: datetime, chunk: int = INSERT_CHUNK
) -> Iterator[list[dict[str, Any]]]:
    """``n`` connection records of virtual connections, ``chunk`` at a time, in ``store.put``'s shape:
    ids ``virt.000000``..., one user each, live for ``RECORD_TTL_S``."""
    expires = now + timedelta(seconds=RECORD_TTL_S)
    for start in range(0, n, chunk):
        docs = []
        for i in range(start, min(n, start + chunk)):
            cid = f"{VIRTUAL_PREFIX}{i:06d}"
            docs.append(
                {
                    "connectionId": cid,
                    "userId": f"{VIRTUAL_PREFIX}u{i:06d}",
                    "bucket": bucket_of(cid),
                    "domainName": domain_name,
                    "stage": stage,
                    "connectedAt": now,
                    "lastSeenAt": now,
                    "expiresAt": expires,
                }
            )
        yield docs


def _collection(mongo: MongoClient[dict[str, Any]], rig: Rig) -> Any:
    return mongo[rig.settings.mongo_db][rig.settings.connections_collection]


def insert_virtual(rig: Rig, n: int) -> float:
    """Write ``n`` virtual records beside the clients' own, pointing at the same API; seconds taken."""
    mongo: MongoClient[dict[str, Any]]
    with MongoClient(rig.settings.mongo(), tz_aware=True) as mongo:
        col = _collection(mongo, rig)
        real = col.find_one({}, {"_id": 0, "domainName": 1, "stage": 1})
        if real is None:
            raise RuntimeError("no client connection record to copy the API's domain and stage from")
        started = time.monotonic()
        for docs in virtual_records(n, real["domainName"], real["stage"], datetime.now(UTC)):
            col.insert_many(docs, ordered=False)
        return round(time.monotonic() - started, 1)


def delete_virtual(rig: Rig) -> int:
    """Delete every virtual record; how many there were."""
    mongo: MongoClient[dict[str, Any]]
    with MongoClient(rig.settings.mongo(), tz_aware=True) as mongo:
        result = _collection(mongo, rig).delete_many({"connectionId": {"$regex": f"^{VIRTUAL_PREFIX}"}})
        return int(result.deleted_count)


async def _virtual_posts(http: aiohttp.ClientSession, rig: Rig) -> int:
    s = rig.settings
    async with http.get(f"http://{s.gateway_host}:{s.gateway_port}/_emulator/stats") as r:
        return int((await r.json())["counts"].get("virtual", 0))


async def _worker_metrics(http: aiohttp.ClientSession, rig: Rig) -> dict[str, float]:
    """The worker's samples summed over their labels, by sample name."""
    s = rig.settings
    async with http.get(f"http://{s.metrics_host}:{s.metrics_port}/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def _notify(rig: Rig, feed: Feed, stop: asyncio.Event) -> int:
    """Publish one notification to one client every ``NOTIFY_EVERY_S`` until ``stop``; how many."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while not stop.is_set():
        user = rig.users[sent % len(rig.users)]
        body = build_event(NOTIFY_TYPE, user_ids=[user], payload={"notificationId": f"bn{sent}"})
        await feed.send_all([body], concurrency=1)
        sent += 1
        pause = start + sent * NOTIFY_EVERY_S - loop.time()
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
    return sent


def _pid(part: Any) -> int | None:
    return part.process.pid if part is not None and part.process is not None else None


def _cpu(pid: int | None) -> float:
    return cpu_seconds(pid) if pid is not None else 0.0


async def broadcast(rig: Rig, feed: Feed, point_to_point: float, processes: int) -> Broadcast:
    """Write the plan's virtual records, broadcast to them and the clients, measure, delete them."""
    n = rig.plan.broadcast
    rig.echo(f"broadcast: writing {n} virtual connection records")
    insert_s = await asyncio.to_thread(insert_virtual, rig, n)
    rig.echo(f"broadcast: {insert_s}s to write them; broadcasting to them and the clients")
    try:
        return await _measure(rig, feed, n, point_to_point, processes, insert_s)
    finally:
        started = time.monotonic()
        deleted = await asyncio.to_thread(delete_virtual, rig)
        rig.echo(f"broadcast: {deleted} virtual records deleted in {time.monotonic() - started:.0f}s")


async def _follow(
    rig: Rig, http: aiohttp.ClientSession, n: int, clients: int, virtual0: int, rss: list[float]
) -> tuple[int, int, float]:
    """Poll the emulator's and the clients' counts until every post arrived or none did for
    ``STALL_S``, sampling the worker's RSS into ``rss``; (virtual posts, client frames, wall time of
    the last count that grew)."""
    virtual = real = 0
    progress_at = next_rss = time.monotonic()
    done_at = time.time()
    while virtual < n or real < clients:
        await asyncio.sleep(POLL_S)
        now = time.monotonic()
        counted = await _virtual_posts(http, rig) - virtual0
        frames = (await rig.stats())["types"].get(BROADCAST_TYPE, 0)
        if counted > virtual or frames > real:
            progress_at, done_at = now, time.time()
        virtual, real = counted, frames
        if now >= next_rss:
            rss.append(sum(rss_mb(rig.worker_pid)))
            next_rss = now + RSS_EVERY_S
        if now - progress_at > STALL_S:
            rig.echo(f"  WARNING: broadcast stalled at {virtual} of {n} virtual posts")
            break
    return virtual, real, done_at


def _delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


async def _measure(
    rig: Rig, feed: Feed, n: int, point_to_point: float, processes: int, insert_s: float
) -> Broadcast:
    assert rig.stack is not None
    worker, mongo, gateway = rig.worker_pid, _pid(rig.stack.mongo), _pid(rig.stack.gateway)
    async with aiohttp.ClientSession() as http:
        await rig.reset()
        clients = (await rig.stats())["open"]
        virtual0, before = await _virtual_posts(http, rig), await _worker_metrics(http, rig)
        rss = [sum(rss_mb(worker))]
        cpu0, mongo0, gw0, busy0 = _cpu(worker), _cpu(mongo), _cpu(gateway), machine_busy_seconds()
        body = build_event(BROADCAST_TYPE, broadcast=True, payload={"noticeId": secrets.token_hex(6)})
        t0 = time.time()
        await feed.send_all([body])
        stop = asyncio.Event()
        notifier = asyncio.create_task(_notify(rig, feed, stop))
        try:
            virtual, real, done_at = await _follow(rig, http, n, clients, virtual0, rss)
            wall = time.time() - t0
            cpu1, mongo1, gw1, busy1 = _cpu(worker), _cpu(mongo), _cpu(gateway), machine_busy_seconds()
            rss.append(sum(rss_mb(worker)))
        finally:
            stop.set()
            notified = await notifier
        stats = await rig.wait(clients + notified, timeout_s=30)
        after = await _worker_metrics(http, rig)
    notes = (await rig.stats(by_type=True)).get("latencies_by_type", {}).get(NOTIFY_TYPE, [])
    posts = virtual + real
    rig.check("broadcast", n + clients, posts)
    rig.check("broadcast_notifications", notified, stats["types"].get(NOTIFY_TYPE, 0))
    lookups = _delta(after, before, "fanout_lookup_latency_seconds_count")
    waited = _delta(after, before, "fanout_lookup_latency_seconds_sum")
    elapsed, worker_cpu = max(1e-6, done_at - t0), cpu1 - cpu0
    return Broadcast(
        connections=n + clients,
        processes=processes,
        shards=round(_delta(after, before, "fanout_shards_total")),
        posts=posts,
        seconds=round(elapsed, 3),
        posts_per_s=round(posts / elapsed, 1),
        point_to_point_posts_per_s=point_to_point,
        over_point_to_point=round(posts / elapsed / point_to_point, 2) if point_to_point else 0.0,
        worker_cpu_us_per_post=round(worker_cpu / max(1, posts) * 1e6, 1),
        worker_cpu_share=round(worker_cpu / wall, 3),
        others_cpu_share=round((busy1 - busy0 - worker_cpu) / wall, 3),
        secantus_cpu_share=round((mongo1 - mongo0) / wall, 3),
        emulator_cpu_share=round((gw1 - gw0) / wall, 3),
        lookup_ms_mean=round(waited / lookups * 1000, 1) if lookups else 0.0,
        rss_mb=Rss.of([round(x, 1) for x in rss]),
        urgent_ms=Percentiles.of(notes),
        insert_s=insert_s,
    )
