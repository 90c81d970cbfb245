"""The baselines the worker is measured against, each posting the same 1 KiB frame to the same emulator.

- (a) ``inline``: the seed's design in the request path, pymongo reads per user, then serial boto3
  ``post_to_connection``, deleting on 410;
- (b) ``aiobotocore``: ``post_to_connection`` through aiobotocore, ``CONCURRENCY`` in flight;
- (c) ``floor``: an unsigned aiohttp POST (a static ``Authorization`` header), ``CONCURRENCY`` in flight;
- (c') ``client_floor``: the floor's POST through the worker's own HTTP client. Not a target: it shows
  how much of the worker's CPU lies outside its HTTP requests.

They run in the bench's own process, so their CPU is ``time.process_time`` here.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from pymongo import MongoClient

from fanout.bench.plan import EVENT_TYPE
from fanout.bench.results import Baseline, Inline, Percentiles
from fanout.bench.rig import Rig
from fanout.gateway.http import HttpClient
from fanout.gateway.http import frame as frame_request
from fanout.publish import build_event

CONCURRENCY = 64  # posts in flight for the aiobotocore and floor baselines
STATIC_AUTH = (  # the emulator wants a SigV4-shaped header; the floor sends this one, unsigned work-free
    "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)
DUMMY_KEYS: dict[str, Any] = {"aws_access_key_id": "fanout-bench", "aws_secret_access_key": "fanout-bench"}

Post = Callable[[str, bytes], Awaitable[None]]


async def inline(rig: Rig) -> Inline:
    """(a) the seed's design in the request path: per user, read connections, then boto3 posts."""
    s = rig.settings
    mongo: MongoClient[dict[str, Any]] = MongoClient(s.mongo(), tz_aware=True)
    col = mongo[s.mongo_db][s.connections_collection]
    api: Any = boto3.client(
        "apigatewaymanagementapi", endpoint_url=rig.api_url, region_name=s.region, **DUMMY_KEYS
    )
    gone = api.exceptions.GoneException

    def publish_inline(user_ids: list[str]) -> int:
        frame = build_event(EVENT_TYPE, user_ids=user_ids, payload=rig.payload).client_frame
        posts = 0
        for user in user_ids:
            now = datetime.now(UTC)
            for doc in col.find({"userId": user, "expiresAt": {"$gt": now}}, {"_id": 0, "connectionId": 1}):
                try:
                    api.post_to_connection(ConnectionId=doc["connectionId"], Data=frame)
                    posts += 1
                except gone:
                    col.delete_one({"connectionId": doc["connectionId"]})
        return posts

    try:
        await rig.reset()
        sent = publish_inline(rig.users[:20])  # warm the clients up
        request_ms: dict[int, Percentiles] = {}
        for size, calls in rig.plan.inline_calls.items():
            times = []
            for k in range(calls):
                users = rig.audience(k, size)
                t = time.perf_counter()
                sent += publish_inline(users)
                times.append((time.perf_counter() - t) * 1000)
            request_ms[size] = Percentiles.of(times)
        calls = max(1, rig.plan.inline_posts // 20)
        cpu0, t0 = time.process_time(), time.perf_counter()
        posts = sum(publish_inline(rig.audience(k, 20)) for k in range(calls))
        cpu1, t1 = time.process_time(), time.perf_counter()
        sent += posts
        singles = max(1, rig.plan.inline_posts // 4)  # the common event: one user, one connection
        cpu2 = time.process_time()
        sent += sum(publish_inline(rig.audience(k, 1)) for k in range(singles))
        cpu3 = time.process_time()
        out = Inline(
            request_ms,
            posts_per_s=round(posts / (t1 - t0), 1),
            cpu_us_per_post=round((cpu1 - cpu0) / max(1, posts) * 1e6, 1),
            cpu_us_per_event_fanout_1=round((cpu3 - cpu2) / singles * 1e6, 1),
        )
        stats = await rig.wait(sent, timeout_s=60)
        rig.check("inline", sent, stats["total"])
    finally:
        api.close()
        mongo.close()
    return out


async def _drive(rig: Rig, post: Post, targets: list[str]) -> Baseline:
    """``baseline_posts`` posts at fan-out 20 with ``CONCURRENCY`` in flight; CPU of this process."""
    events = max(1, rig.plan.baseline_posts // len(targets))
    work = deque((cid, frame) for frame in rig.frames(events) for cid in targets)
    total = len(work)
    await rig.reset()

    async def lane() -> None:
        while work:
            cid, frame = work.popleft()
            await post(cid, frame)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    cpu1, t1 = time.process_time(), time.perf_counter()
    stats = await rig.wait(total, timeout_s=60)
    return Baseline(
        posts=total,
        received=stats["total"],
        posts_per_s=round(total / (t1 - t0), 1),
        cpu_us_per_post=round((cpu1 - cpu0) / total * 1e6, 1),
    )


async def _measure(rig: Rig, name: str, post: Post, targets: list[str]) -> Baseline:
    """One warm-up post, then ``_drive``; the frames' check is recorded under ``name``."""
    await post(targets[0], rig.frames(1)[0])
    out = await _drive(rig, post, targets)
    rig.check(name, out.posts, out.received)
    return out


async def aiobotocore(rig: Rig, targets: list[str]) -> Baseline:
    """(b) ``post_to_connection`` through aiobotocore, ``CONCURRENCY`` in flight."""
    config = AioConfig(max_pool_connections=CONCURRENCY, retries={"max_attempts": 1})
    async with get_session().create_client(
        "apigatewaymanagementapi",
        endpoint_url=rig.api_url,
        region_name=rig.settings.region,
        config=config,
        **DUMMY_KEYS,
    ) as api:

        async def post(cid: str, frame: bytes) -> None:
            await api.post_to_connection(ConnectionId=cid, Data=frame)

        return await _measure(rig, "aiobotocore", post, targets)


async def floor(rig: Rig, targets: list[str]) -> Baseline:
    """(c) the same POST, unsigned (a static Authorization header), through bare aiohttp."""
    headers = {"Authorization": STATIC_AUTH, "Content-Type": "application/octet-stream"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(cid: str, frame: bytes) -> None:
            async with http.post(f"{rig.api_url}/@connections/{cid}", data=frame, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"floor post answered {r.status}")

        return await _measure(rig, "floor", post, targets)


async def client_floor(rig: Rig, targets: list[str]) -> Baseline:
    """(c') the floor's unsigned POST through the worker's own HTTP client, ``fanout.gateway.http``."""
    url = urlsplit(rig.api_url)
    http = HttpClient(timeout_s=30)
    origin = http.origin(url.scheme, url.hostname or "", url.port)
    headers = [("Authorization", STATIC_AUTH), ("Content-Type", "application/octet-stream")]

    async def post(cid: str, body: bytes) -> None:
        path = f"{url.path}/@connections/{cid}"
        status, _ = await origin.request(frame_request("POST", url.netloc, path, headers, body))
        if status != 200:
            raise RuntimeError(f"client floor post answered {status}")

    try:
        return await _measure(rig, "client_floor", post, targets)
    finally:
        await http.close()
