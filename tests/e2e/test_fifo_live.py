"""Typing stops, presence checks and remainders on a FIFO events queue, which takes no per-message
DelaySeconds: they are sent at once in groups of their own and the worker holds each until it is due."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout.publish import build_event
from tests.conftest import Stack, stack_env, start_stack, stop_stack_later
from tests.e2e.conftest import LIVE_ENV, uid
from tests.helpers import connect, scrape, sqs_client, wait_for


@pytest.fixture(scope="module")
def fifo_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """`fanout dev` with the short timings of the live stack, on a FIFO events queue and DLQ."""
    suffix = secrets.token_hex(4)
    names = {
        "FANOUT_QUEUE_NAME": f"fanout-events-{suffix}.fifo",
        "FANOUT_DLQ_NAME": f"fanout-dlq-{suffix}.fifo",
    }
    env = stack_env(**LIVE_ENV, **names, FANOUT_OUTAGE_DELAY_S="3")  # an outage's wait, 5 s by default
    running = start_stack(tmp_path_factory.mktemp("fifo-live"), env)
    yield running
    stop_stack_later(running)


async def test_on_a_fifo_queue_typing_stops_and_presence_goes_offline_when_due(fifo_stack: Stack) -> None:
    """The automatic typing stop arrives about FANOUT_TYPING_TIMEOUT_S (1 s) after started, not at once,
    and a user's last disconnect is announced offline after the grace (2 s), not before."""
    typist, other, conversation = uid("t"), uid("b"), uid("conv")
    s = fifo_stack.settings
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(s.mongo(), tz_aware=True)
    try:
        await client[s.mongo_db].conversations.insert_one(
            {"_id": conversation, "participants": [typist, other]}
        )
    finally:
        await client.close()
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watching = await connect(es, http, fifo_stack.ws_url, s, other)
        typing = await connect(es, http, fifo_stack.ws_url, s, typist)

        def seen(kind: str) -> list[dict[str, Any]]:
            return [f for f in watching.events() if f["type"] == kind and f["payload"]["userId"] == typist]

        await wait_for(lambda: len(seen("user.presence.updated")) == 1, timeout=10)
        sent = time.monotonic()
        await typing.ws.send_json(
            {"action": "chat.typing", "conversationId": conversation, "state": "started"}
        )
        await wait_for(lambda: len(seen("chat.typing.stopped")) == 1, timeout=10)
        assert 0.9 <= time.monotonic() - sent  # the stop waited for its due time
        assert 1 == len(seen("chat.typing.started"))

        await typing.close()
        closed = time.monotonic()
        await wait_for(lambda: len(seen("user.presence.updated")) == 2, timeout=15)
        assert 1.5 <= time.monotonic() - closed
        assert ["online", "offline"] == [f["payload"]["status"] for f in seen("user.presence.updated")]


async def test_on_a_fifo_queue_an_outages_remainder_waits_its_delay(
    fifo_stack: Stack, closed_port: int
) -> None:
    """Every post of an event failing at the socket (an outage) re-enqueues it after FANOUT_OUTAGE_DELAY_S
    (3 s here) on a FIFO queue too: held until then, not received again every second until it expires."""
    s = fifo_stack.settings
    user = uid("outage")
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)
    record = {"connectionId": uid("dead"), "userId": user, "domainName": f"127.0.0.1:{closed_port}",
              "stage": "local", "connectedAt": old, "lastSeenAt": old, "expiresAt": now + timedelta(hours=1)}  # fmt: skip
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(s.mongo(), tz_aware=True)
    col = client[s.mongo_db][s.connections_collection]
    try:
        await col.insert_one(record)
        before = (await scrape(fifo_stack.metrics_url)).value("fanout_remainders_total")
        event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[user])
        sqs = sqs_client(s)
        url = sqs.get_queue_url(QueueName=s.queue_name)["QueueUrl"]
        sqs.send_message(
            QueueUrl=url, MessageBody=event.to_json(), MessageGroupId=user, MessageDeduplicationId=event.id
        )
        sqs.close()
        await asyncio.sleep(7.5)
        written = (await scrape(fifo_stack.metrics_url)).value("fanout_remainders_total") - before
    finally:
        await col.delete_many({"userId": user})
        await client.close()
    assert 1 <= written <= 3  # at 0, 3 and 6 s: held at once every time, it was 13
