"""Presence end to end: online and offline once per real change, however many tabs, no flapping on quick
reconnects, offline when the last record lapses without a $disconnect, and presence.query, through the
emulator, the lifecycle, the worker (FANOUT_PRESENCE_GRACE_S=2, a census every second) and SecantusDB."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from tests.conftest import Stack
from tests.e2e.conftest import uid
from tests.helpers import Client, connect, wait_for

GRACE_S = 2


def _presence(client: Client, user: str) -> list[str]:
    """The statuses of ``user`` a client was told, in order."""
    return [
        f["payload"]["status"]
        for f in client.events()
        if f["type"] == "user.presence.updated" and f["payload"]["userId"] == user
    ]


async def _watched(live_stack: Stack, product_db: Any) -> tuple[str, str]:
    user, watcher = uid("u"), uid("w")
    await product_db.conversations.insert_one({"_id": uid("conv"), "participants": [user, watcher]})
    return user, watcher


async def test_online_and_offline_once_per_real_change_across_tabs(
    live_stack: Stack, product_db: Any
) -> None:
    """Three tabs opening make one online, two of them closing make nothing, the last one closing makes
    one offline with lastSeenAt, after the grace period; a stranger is told nothing."""
    user, watcher = await _watched(live_stack, product_db)
    s = live_stack.settings
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watching = await connect(es, http, live_stack.ws_url, s, watcher)
        stranger = await connect(es, http, live_stack.ws_url, s, uid("s"))
        tabs = [await connect(es, http, live_stack.ws_url, s, user) for _ in range(3)]
        await wait_for(lambda: _presence(watching, user) == ["online"], timeout=10)
        for tab in tabs[:2]:
            await tab.close()
        await asyncio.sleep(GRACE_S + 1)
        assert ["online"] == _presence(watching, user)
        closed = datetime.now(UTC)
        await tabs[2].close()
        await wait_for(lambda: _presence(watching, user) == ["online", "offline"], timeout=10)
        [offline] = [f for f in watching.events() if f["payload"].get("status") == "offline"]
        assert abs(datetime.fromisoformat(offline["payload"]["lastSeenAt"]) - closed) < timedelta(seconds=2)
        await asyncio.sleep(1)
        assert ["online", "offline"] == _presence(watching, user)
        assert [] == _presence(stranger, user)


async def test_flapping_reconnects_produce_no_extra_updates(live_stack: Stack, product_db: Any) -> None:
    """A connection that drops and comes back within the grace period, three times over, changes nothing
    for the watcher: one online, then one offline when it is gone for good."""
    user, watcher = await _watched(live_stack, product_db)
    s = live_stack.settings
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watching = await connect(es, http, live_stack.ws_url, s, watcher)
        tab = await connect(es, http, live_stack.ws_url, s, user)
        await wait_for(lambda: _presence(watching, user) == ["online"], timeout=10)
        for _ in range(3):
            await tab.close()
            await asyncio.sleep(0.3)
            tab = await connect(es, http, live_stack.ws_url, s, user)
        await asyncio.sleep(GRACE_S + 1.5)  # every scheduled check came due, and found the user back
        assert ["online"] == _presence(watching, user)
        await tab.close()
        await wait_for(lambda: _presence(watching, user) == ["online", "offline"], timeout=10)


async def test_a_last_record_that_lapses_without_a_disconnect_goes_offline(
    live_stack: Stack, product_db: Any
) -> None:
    """When API Gateway never sends $disconnect, the record's expiry is what ends it: the census sees the
    user's last record lapse and the watcher is told offline."""
    user, watcher = await _watched(live_stack, product_db)
    s = live_stack.settings
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watching = await connect(es, http, live_stack.ws_url, s, watcher)
        await connect(es, http, live_stack.ws_url, s, user)  # it stays open and silent
        await wait_for(lambda: _presence(watching, user) == ["online"], timeout=10)
        lapsed = datetime.now(UTC) - timedelta(seconds=1)
        await product_db[s.connections_collection].update_many(
            {"userId": user}, {"$set": {"expiresAt": lapsed}}
        )
        await wait_for(lambda: _presence(watching, user) == ["online", "offline"], timeout=15)


async def test_a_client_asks_for_the_presence_of_the_users_it_may_see(
    live_stack: Stack, product_db: Any
) -> None:
    """presence.query answers presence.ok with the online user it shares a conversation with and leaves
    out a stranger, whatever that stranger's state."""
    user, watcher = await _watched(live_stack, product_db)
    stranger = uid("s")
    s = live_stack.settings
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watching = await connect(es, http, live_stack.ws_url, s, watcher)
        await connect(es, http, live_stack.ws_url, s, user)
        await connect(es, http, live_stack.ws_url, s, stranger)
        await watching.ws.send_json({"action": "presence.query", "id": "q1", "userIds": [user, stranger]})
        await wait_for(lambda: any(f.get("replyTo") == "q1" for f in watching.frames), timeout=10)
        [answer] = [f for f in watching.frames if f.get("replyTo") == "q1"]
        assert ("presence.ok", [{"userId": user, "status": "online", "lastSeenAt": None}]) == (
            answer["type"], answer["payload"]["users"])  # fmt: skip
