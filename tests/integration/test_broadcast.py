"""A broadcast at scale: split into shards that both processes of a pool deliver, without delaying a
notification published behind it. Most of the audience is virtual connections (ids ``virt.*``, which the
gateway emulator answers and counts without a socket); a hundred real WebSocket clients show the frames.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import MongoClient

from fanout import Publisher
from fanout.bench import sink
from fanout.bench.broadcast import virtual_records
from tests.conftest import Stack, stack_env, start_stack, stop_stack_later
from tests.helpers import WorkerPool, connect, wait_for
from tests.integration.conftest import stats as emulator_counts

AUDIENCE = 2000
REAL = 100  # real WebSocket clients; the rest of the audience is virtual
SHARD = 200


@pytest.fixture(scope="module")
def broadcast_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """A stack without a worker, shards of 200 connections; the test runs a pool of two."""
    env = stack_env(FANOUT_SHARD_SIZE=str(SHARD), FANOUT_LOG_LEVEL="INFO")
    stack = start_stack(tmp_path_factory.mktemp("broadcast"), env, "--no-worker")
    yield stack
    stop_stack_later(stack)


class Clients:
    """``sink``'s real WebSocket clients, in a process of their own."""

    def __init__(self, stack: Stack) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.process = ctx.Process(target=sink.main, args=(child, stack.ws_url, stack.settings.jwt_key()))
        self.process.start()

    async def ask(self, command: str, **args: Any) -> Any:
        self.pipe.send((command, args))
        while not self.pipe.poll():
            await asyncio.sleep(0.01)
        return self.pipe.recv()

    def close(self) -> None:
        self.pipe.send(("close", {}))
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()


def _insert_virtual(stack: Stack, n: int) -> None:
    """``n`` virtual connection records on the real clients' API (domain and stage), as ``store.put``
    writes them."""
    s = stack.settings
    with MongoClient(s.mongo(), tz_aware=True) as mongo:
        col: Any = mongo[s.mongo_db][s.connections_collection]
        real = col.find_one({}, {"_id": 0, "domainName": 1, "stage": 1})
        assert real is not None, "no real connection record to copy the API from"
        for docs in virtual_records(n, real["domainName"], real["stage"], datetime.now(UTC)):
            col.insert_many(docs)


def _virtual_posts(stack: Stack) -> int:
    return emulator_counts(stack).get("virtual", 0)


def _log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


@pytest.mark.timeout(240)
async def test_a_broadcast_is_sharded_over_the_pool_and_urgent_events_pass_it(
    broadcast_stack: Stack, tmp_path: Path
) -> None:
    """2,000 connections (100 real clients, the rest virtual) get a broadcast exactly once, its shards are
    handled by both processes, and a notification published during it arrives within a second."""
    stack = broadcast_stack
    clients = Clients(stack)
    pool = WorkerPool(stack, tmp_path / "pool.log")
    virtual = AUDIENCE - REAL
    try:
        pool.start()  # it starts (seconds) while the clients connect: it posts nothing before the broadcast
        assert REAL == await clients.ask("connect", users=[f"b-{i}" for i in range(REAL)])
        await asyncio.to_thread(_insert_virtual, stack, virtual)
        virtual0 = await asyncio.to_thread(_virtual_posts, stack)
        await clients.ask("reset", track_ids=True)
        await pool.ready()
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
            async with http.put(f"{stack.gateway_url}/_emulator/faults", json={"latency_ms": 2}) as r:
                assert 200 == r.status
            urgent_client = await connect(es, http, stack.ws_url, stack.settings, "urgent-user")
            publisher = Publisher(stack.settings)
            broadcast = publisher.publish(
                "system.notice", broadcast=True, payload={"noticeId": "maint-1", "title": "maintenance"}
            )
            await wait_for(lambda: (tmp_path / "pool.log").read_text().count('"event_done"') >= 2, timeout=60)
            during = await asyncio.to_thread(_virtual_posts, stack) - virtual0
            sent = time.monotonic()
            urgent = publisher.publish(
                "notification.new", user_ids=["urgent-user"], payload={"notificationId": "n1"}
            )
            await wait_for(
                lambda: urgent in {e["id"] for e in urgent_client.events()}, timeout=10, every=0.01
            )
            urgent_s = time.monotonic() - sent
            publisher.close()
            await clients.ask("wait", expected=REAL, timeout_s=120)
            await wait_for(lambda: _virtual_posts(stack) - virtual0 >= virtual, timeout=120, every=0.2)
            stats = await clients.ask("stats")
    finally:
        clients.close()
        pool.terminate()
    posted = await asyncio.to_thread(_virtual_posts, stack)  # the pool is stopped: nothing more comes
    lines = _log_lines(tmp_path / "pool.log")
    shards = [x for x in lines if x.get("event") == "event_done" and x.get("shard")]
    assert (REAL, 0) == (stats["ids"].get(broadcast, 0), stats["repeats"])
    assert virtual == posted - virtual0, "each virtual connection got one post"
    assert len(shards) >= AUDIENCE // SHARD
    assert 2 == len(Counter(x["pid"] for x in shards)), "both processes took shards"
    assert during < virtual, "the notification was published after the broadcast had ended"
    assert urgent_s < 1.0, f"the notification took {urgent_s:.2f} s behind the broadcast"
    print(json.dumps({"audience": AUDIENCE, "shards": len(shards), "urgent_s": round(urgent_s, 3)}))
