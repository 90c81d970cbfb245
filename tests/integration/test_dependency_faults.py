"""Dependency faults: MongoDB goes away and comes back; the worker reports it and loses nothing."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from fanout import Publisher
from tests.conftest import Stack, free_port, stack_env, start_stack, stop_stack
from tests.helpers import connect, drain_queue, wait_for


class Mongo:
    """A SecantusDB process on disk, so it can be stopped and started again with its data."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.path), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


async def _ready(stack: Stack) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{stack.metrics_url}/readyz") as r:
            return r.status
    except aiohttp.ClientError:
        return 0


@pytest.fixture
def mongo_stack(tmp_path: Path, _isolate_aws: None) -> Iterator[tuple[Stack, Mongo]]:
    mongo = Mongo(tmp_path / "mongo", free_port())
    mongo.start()
    env = stack_env(FANOUT_MONGO_URI=f"mongodb://127.0.0.1:{mongo.port}", FANOUT_MONGO_TIMEOUT_MS="1000")
    time.sleep(1.5)  # let it open its port before `fanout dev` looks for a MongoDB
    stack = start_stack(tmp_path, env)  # finds MongoDB answering, so starts no SecantusDB of its own
    yield stack, mongo
    stop_stack(stack)
    mongo.stop()


async def test_mongo_outage_then_recovery_loses_no_event(mongo_stack: tuple[Stack, Mongo]) -> None:
    """With MongoDB stopped, /readyz turns 503 and events wait; once it is back, all are delivered."""
    stack, mongo = mongo_stack
    user = f"outage-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        mongo.stop()
        await wait_for(lambda: _is(stack, 503), timeout=30)
        publisher = Publisher(stack.settings)
        ids = {publisher.publish("notification.new", user_ids=[user], payload={"n": i}) for i in range(20)}
        publisher.close()
        await asyncio.sleep(3)
        assert 503 == await _ready(stack)
        mongo.start()
        await wait_for(lambda: _is(stack, 200), timeout=60)
        await wait_for(lambda: ids <= {e["id"] for e in client.events()}, timeout=90)
    assert [] == drain_queue(stack.settings, stack.settings.dlq_name, wait_s=0)


async def _is(stack: Stack, status: int) -> bool:
    return status == await _ready(stack)
