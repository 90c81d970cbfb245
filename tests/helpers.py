"""Small helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import boto3
from pymongo import AsyncMongoClient

from fanout.config import Settings
from fanout.store import ConnectionStore
from fanout.tokens import sign


class Client:
    """A real WebSocket client of one user, collecting every frame it receives."""

    def __init__(self, user_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.user_id = user_id
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    def events(self) -> list[dict[str, Any]]:
        """Frames that are events (not replies such as ping.pong)."""
        return [f for f in self.frames if "id" in f]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def connect(
    stack: AsyncExitStack, http: aiohttp.ClientSession, url: str, settings: Settings, user_id: str
) -> Client:
    """Connect a client with a fresh token; returns once its connection record exists."""
    ws = await http.ws_connect(url, params={"token": sign(user_id, settings.jwt_key())})
    client = Client(user_id, ws)
    stack.push_async_callback(client.close)
    await ws.send_json({"action": "ping"})
    await wait_for(lambda: any(f.get("type") == "ping.pong" for f in client.frames))
    return client


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 15, every: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


def open_store(settings: Settings) -> tuple[AsyncMongoClient[dict[str, Any]], ConnectionStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    return client, ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)


def sqs_client(settings: Settings) -> Any:
    return boto3.client("sqs", **settings.aws_client_kwargs())


def drain_queue(settings: Settings, queue_name: str, wait_s: int = 1) -> list[dict[str, Any]]:
    """Receive and delete everything in a queue (with attributes)."""
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, MessageAttributeNames=["All"]
        )
        messages = reply.get("Messages", [])
        if not messages:
            break
        out.extend(messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    sqs.close()
    return out


class QueueReceiver:
    """Receives and deletes a queue's messages on threads while a test runs, counting event ids.

    Receiving while publishing keeps the queue shallow, as a worker would. Calls that fail (the queue
    stopped) are retried, so it rides through an outage.
    """

    def __init__(self, settings: Settings, threads: int = 3) -> None:
        self.settings = settings
        self.ids: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []
        self.message_ids: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> QueueReceiver:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        sqs = sqs_client(self.settings)
        url = ""
        while not self._stop.is_set():
            try:
                url = url or sqs.get_queue_url(QueueName=self.settings.queue_name)["QueueUrl"]
                # Short polls, pausing only on an empty queue: a long poll returns with the first message of
                # a batch being sent, and receives of one or two would make moto the bottleneck.
                reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
                messages = reply.get("Messages", [])
                if not messages:
                    time.sleep(0.02)
                if messages:
                    deleted = sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    assert not deleted.get("Failed"), deleted["Failed"]
            except Exception:
                time.sleep(0.2)
                continue
            with self._lock:
                for m in messages:
                    body = json.loads(m["Body"])
                    self.ids[body["id"]] += 1
                    self.bodies.append(body)
                    self.message_ids[body["id"]].append(m["MessageId"])
        sqs.close()

    def total(self) -> int:
        with self._lock:
            return sum(self.ids.values())

    async def until(self, count: int, timeout: float = 60, settle_s: float = 1.0) -> collections.Counter[str]:
        """``wait`` without blocking the event loop (for tests whose relays run on it)."""
        return await asyncio.to_thread(self.wait, count, timeout, settle_s)

    def wait(self, count: int, timeout: float = 60, settle_s: float = 1.0) -> collections.Counter[str]:
        """Wait until ``count`` messages arrived, then ``settle_s`` more for any duplicate; the counts."""
        deadline = time.monotonic() + timeout
        while self.total() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle_s)
        with self._lock:
            return collections.Counter(self.ids)
