"""Ordering keys on a real stack: every client sees each key's events in seq order with no gap, with
concurrent publishers, on a standard queue within one worker process and on a FIFO queue across a pool
of two."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout import AsyncPublisher
from fanout.client import FanoutClient, Resync, token_url
from fanout.local.queues import create_queues
from fanout.sequence import SequenceAllocator
from fanout.tokens import sign
from tests.catalog_examples import payload
from tests.conftest import Stack
from tests.helpers import WorkerPool, connect, wait_for
from tests.integration.conftest import NO_FAULTS, faults


@pytest.fixture
async def mongo(request: pytest.FixtureRequest) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    stack: Stack = request.getfixturevalue(request.param)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    yield client
    await client.close()


def _by_key(frames: list[dict[str, Any]]) -> dict[str, list[int]]:
    seqs: defaultdict[str, list[int]] = defaultdict(list)
    for frame in frames:
        if "key" in frame:
            seqs[frame["key"]].append(frame["seq"])
    return dict(seqs)


@pytest.mark.parametrize("mongo", ["stack"], indirect=True)
async def test_clients_see_every_keys_events_in_seq_order_on_a_standard_queue(
    stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """Three publishers race on three keys (a topic both users follow, and each user's own stream); the
    reference client of each user hands on every key's events once, in seq order, with no gap."""
    s = stack.settings
    run = secrets.token_hex(4)
    users = [f"ord-{run}-a", f"ord-{run}-b"]
    topic = f"event:ord-{run}"
    keys = {topic: {"topics": [topic]}} | {f"user:{u}": {"user_ids": [u]} for u in users}
    resyncs: list[Resync] = []
    async with AsyncExitStack() as es:
        clients = []
        for user in users:
            url = token_url(stack.ws_url, lambda u=user: sign(u, s.jwt_key()))
            client = await es.enter_async_context(FanoutClient(url, hold_s=3, on_resync=resyncs.append))
            for key in (topic, f"user:{user}"):
                client.set_position(key, 0)  # new streams: every event from seq 1 is expected
            clients.append((client, await client.subscribe([topic])))
        for client, _ in clients:
            await asyncio.wait_for(client.connected.wait(), 10)

        async def publish(i: int, count: int) -> None:
            sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
            rng = random.Random(i)
            async with AsyncPublisher(s, sequences=sequences) as pub:
                for _ in range(count):
                    key = rng.choice(list(keys))
                    await pub.publish(
                        "event.upcoming.updated",
                        payload=payload("event.upcoming.updated"),
                        ordering_key=key,
                        **keys[key],
                    )  # type: ignore[arg-type]

        await asyncio.gather(*(publish(i, 20) for i in range(3)))
        allocated = {d["_id"]: d["seq"] for d in await mongo[s.mongo_db][s.sequences_collection].find(
            {"_id": {"$in": list(keys)}}).to_list(None)}  # fmt: skip
        assert 60 == sum(allocated.values())
        for (_, sub), user in zip(clients, users, strict=True):
            mine = {topic: allocated[topic], f"user:{user}": allocated[f"user:{user}"]}
            got: list[dict[str, Any]] = []
            async with asyncio.timeout(15):
                while len(got) < sum(mine.values()):
                    got.append(await sub.get())
            assert {k: list(range(1, n + 1)) for k, n in mine.items() if n} == _by_key(got)
    assert [] == resyncs


@pytest.fixture
def fifo_pool(bare_stack: Stack, tmp_path: Path) -> Iterator[tuple[Stack, WorkerPool]]:
    """A FIFO events queue (and FIFO DLQ) of this test's own on the bare stack, and a pool of two worker
    processes on it."""
    suffix = secrets.token_hex(4)
    names = {"queue_name": f"fanout-events-{suffix}.fifo", "dlq_name": f"fanout-events-dlq-{suffix}.fifo",
             "bulk_queue_name": f"fanout-bulk-{suffix}", "topic_name": f"fanout-events-{suffix}"}  # fmt: skip
    settings = bare_stack.settings.model_copy(update=names)
    create_queues(settings)
    env = {**bare_stack.env, **{f"FANOUT_{k.upper()}": v for k, v in names.items()}}
    faults(bare_stack, **NO_FAULTS)
    stack = replace(bare_stack, settings=settings, env=env)
    pool = WorkerPool(stack, tmp_path / "pool.log", processes=2)
    pool.start()
    yield stack, pool
    pool.kill()


@pytest.mark.parametrize("mongo", ["bare_stack"], indirect=True)
async def test_a_fifo_queue_keeps_each_keys_order_on_the_wire_across_a_pool_of_two(
    fifo_pool: tuple[Stack, WorkerPool], mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """On a FIFO queue (MessageGroupId = the key) two worker processes share the keys' events, and every
    raw frame of a key reaches the clients in seq order, without the client reordering anything."""
    stack, pool = fifo_pool
    s = stack.settings
    run = secrets.token_hex(4)
    users = [f"fifo-{run}-{i}" for i in range(2)]
    keys = [f"user:{u}" for u in users] + [f"event:fifo-{run}-{i}" for i in range(2)]
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        clients = [await connect(es, http, stack.ws_url, s, u) for u in users]
        for client in clients:
            await client.ws.send_json({"action": "subscribe", "topics": keys[2:], "id": "s"})
            await wait_for(lambda c=client: any(f.get("replyTo") == "s" for f in c.frames))
        await pool.ready()  # started by the fixture: it was starting while the clients connected

        async def publish(key: str, count: int) -> list[str]:
            sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
            target = {"user_ids": [key[5:]]} if key.startswith("user:") else {"topics": [key]}
            async with AsyncPublisher(s, sequences=sequences) as pub:
                return [
                    await pub.publish(
                        "event.upcoming.updated",
                        payload=payload("event.upcoming.updated"),
                        ordering_key=key,
                        **target,
                    )
                    for _ in range(count)
                ]  # type: ignore[arg-type]

        sent = await asyncio.gather(*(publish(key, 15) for key in keys))
        for i, client in enumerate(clients):
            expected = {keys[i]: list(range(1, 16))} | {k: list(range(1, 16)) for k in keys[2:]}
            await wait_for(lambda c=client, n=45: len(c.events()) >= n, timeout=20)
            assert expected == _by_key(client.events())
    key_of = {event_id: key for key, ids in zip(keys, sent, strict=True) for event_id in ids}
    pids: defaultdict[str, set[int]] = defaultdict(set)
    for line in pool.log.read_text().splitlines():
        doc = json.loads(line[line.index("{") :]) if "event_done" in line else {}
        if doc.get("event") == "event_done" and doc.get("event_id") in key_of:
            pids[key_of[doc["event_id"]]].add(doc["pid"])
    assert 2 == len(set().union(*pids.values())), "both processes delivered"
    assert any(len(p) == 2 for p in pids.values()), "a key's events were delivered by both processes"
