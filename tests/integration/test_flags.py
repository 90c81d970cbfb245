"""`fanout flags` against the running stack: switching chat off stops chat deliveries within seconds while
notifications go on, each switched-off event is counted as disabled, and switching it on resumes chat."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from fanout import AsyncPublisher
from fanout.catalog import ChatMessage, NotificationNew
from fanout.flags import FlagStore
from tests.conftest import Stack
from tests.helpers import connect, wait_for

PICKUP_S = 8  # the workers refresh every 2 s; a few seconds is the promise


def _fanout(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args], env={**os.environ, **stack.env}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


async def _disabled(http: aiohttp.ClientSession, stack: Stack) -> float:
    async with http.get(f"{stack.metrics_url}/metrics") as response:
        text = await response.text()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fanout_events_total"
        and s.labels == {"event_type": "chat.message", "outcome": "disabled"}
    )


async def test_switching_chat_off_and_on(stack: Stack) -> None:
    """chat off: within seconds chat.message is counted disabled and not delivered, notification.new still
    is; chat on: chat is delivered again within seconds."""
    user = f"flags-{secrets.token_hex(4)}"
    n = 0

    def chat() -> ChatMessage:
        nonlocal n
        n += 1
        return ChatMessage(conversation_id="c-flags", message_id=f"m{n}", sender_id="u0", text=f"probe {n}")

    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        publisher = await es.enter_async_context(AsyncPublisher(stack.settings))
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo())
        es.push_async_callback(mongo.close)
        store = FlagStore.from_client(mongo, stack.settings.mongo_db, stack.settings.flags_collection)
        # whatever happens, the shared stack delivers chat again (cleared here: a `fanout flags` process
        # costs a Python start-up)
        es.push_async_callback(store.clear, "chat")

        switched = await asyncio.to_thread(_fanout, stack, "flags", "set", "chat", "off")
        assert 0 == switched.returncode, switched.stderr
        started, counted = time.monotonic(), await _disabled(http, stack)
        while await _disabled(http, stack) == counted:  # probes until a worker has picked the switch up
            assert time.monotonic() - started < PICKUP_S, "chat off not applied within a few seconds"
            await publisher.send_event(chat(), user_ids=[user])
            await asyncio.sleep(0.25)
        listed = await asyncio.to_thread(_fanout, stack, "flags", "list")
        assert "chat" in listed.stdout and "off" in listed.stdout

        counted = await _disabled(http, stack)
        muted = await publisher.send_event(chat(), user_ids=[user])
        note = await publisher.send_event(NotificationNew(notification_id="n-flags"), user_ids=[user])
        await wait_for(lambda: note in {e["id"] for e in client.events()})

        async def muted_counted() -> bool:
            return await _disabled(http, stack) > counted

        await wait_for(muted_counted, timeout=10)
        assert muted not in {e["id"] for e in client.events()}

        switched = await asyncio.to_thread(_fanout, stack, "flags", "set", "chat", "on")
        assert 0 == switched.returncode, switched.stderr
        started, sent = time.monotonic(), set()
        while not sent & {e["id"] for e in client.events()}:
            assert time.monotonic() - started < PICKUP_S, "chat on not applied within a few seconds"
            sent.add(await publisher.send_event(chat(), user_ids=[user]))
            await asyncio.sleep(0.25)
        await asyncio.sleep(1)
    assert muted not in {e["id"] for e in client.events()}
