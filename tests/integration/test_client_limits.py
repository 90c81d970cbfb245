"""Both clients against rate_limited refusals of a real lifecycle: the gateway emulator in the test's own
process over a real SecantusDB, its 10-second window lowered to 3 s (the clients wait the windowS of the
answer) and its limits to a few topics or users, so a test sees a refusal and the retry in seconds."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from fanout.client import Backoff, FanoutClient, token_url
from fanout.config import Settings
from fanout.lifecycle import Lifecycle, limits, presence, topics
from fanout.local.emulator import Emulator
from fanout.store import ConnectionStore, mongo_client
from fanout.tokens import sign
from tests.conftest import Server, dev_settings, free_port
from tests.helpers import wait_for
from tests.integration.test_client_live import fanout_js

#: The lowered window, in seconds: what the refusals carry as windowS. A reconnect's frames take well under
#: a second: each test starts them at the top of a window, which they then have to themselves.
WINDOW_S = 3
#: Topics a connection's subscribes may name per window here: a reconnect naming four topics, two of
#: them refused (named together), names 4 + 2 and is refused its second frame.
SUBSCRIBE_TOPICS = 5
#: Topics the product's check allows; each test adds its own.
ALLOWED: set[str] = set()
#: When each topic was asked of the product's check after ``ASKED.clear()``, every time.
ASKED: dict[str, list[float]] = {}


def allowed(user_id: str, topic: str) -> bool:
    """The product's check for these tests: the topics in ``ALLOWED``; every call is timed."""
    ASKED.setdefault(topic, []).append(time.monotonic())
    return topic in ALLOWED


@dataclass
class Local:
    """An emulator serving in this process, and what a client reaches it by."""

    settings: Settings
    ws_url: str
    store: ConnectionStore

    def client(self, user: str) -> FanoutClient:
        """A Python client of ``user`` that pings and reconnects fast."""
        url = token_url(self.ws_url, lambda: sign(user, self.settings.jwt_key()))
        return FanoutClient(url, heartbeat_s=0.2, backoff=Backoff(0.05, 0.5))

    async def topics(self, user: str) -> list[list[str]]:
        """The topics of each connection record of ``user``."""
        records = self.store.database[self.settings.connections_collection].find({"userId": user})
        return [sorted(doc.get("topics", [])) async for doc in records]


@pytest.fixture
async def local(mongo_server: Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Local]:
    """The emulator with the lowered window and subscribe limit, in this process on a free port."""
    monkeypatch.setattr(limits, "WINDOW_S", WINDOW_S)
    monkeypatch.setattr(topics, "SUBSCRIBE_TOPICS_PER_WINDOW", SUBSCRIBE_TOPICS)
    settings = dev_settings(mongo=mongo_server, topic_policy=f"{__name__}:allowed", presence=False)
    async with serve_local(settings) as served:
        yield served


@asynccontextmanager
async def serve_local(settings: Settings) -> AsyncIterator[Local]:
    """The gateway emulator and its lifecycle in this process, on a free port, over a fresh database."""
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    await store.ensure_indexes()
    port = free_port()
    emulator = Emulator(Lifecycle(store, settings), "local", f"127.0.0.1:{port}")
    runner = web.AppRunner(emulator.app(), access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Local(settings, f"ws://127.0.0.1:{port}/local", store)
    finally:
        await runner.cleanup()
        await client.drop_database(settings.mongo_db)
        await client.close()


async def _window_start() -> None:
    """Wait for the next window to begin: what follows has the whole window to itself."""
    await asyncio.sleep(WINDOW_S - time.time() % WINDOW_S)


def _organizations(prefix: str) -> list[str]:
    """Three organizations the product allows now, and one public topic."""
    run = secrets.token_hex(3)
    orgs = [f"organization:{prefix}{run}{name}" for name in "abc"]
    ALLOWED.update(orgs)
    return [*orgs, f"event:{run}"]


async def _reconnect_after_two_revocations(local: Local, user: str, topics_: list[str]) -> float:
    """Take the first two organizations away without a frame, then lose the user's record at the start of
    a window: the client reconnects and names 4, then 2 topics. When the record was lost."""
    await wait_for(lambda: _holds(local, user, topics_), timeout=10)
    ALLOWED.difference_update(topics_[:2])
    ASKED.clear()
    await _window_start()
    lost = time.monotonic()
    await local.store.database[local.settings.connections_collection].delete_many({"userId": user})
    return lost


async def _holds(local: Local, user: str, topics_: list[str]) -> bool:
    return [sorted(topics_)] == await local.topics(user)


async def test_the_python_client_subscribes_again_after_rate_limited_once_the_window_passed(
    local: Local,
) -> None:
    """fanout.client reconnecting with two of its four topics revoked is refused them (both named), then
    rate_limited: it waits the answer's windowS and subscribes the other two (before, it gave up and the
    new connection held nothing)."""
    user, topics_ = f"py-{secrets.token_hex(3)}", _organizations("p")
    async with local.client(user) as client:
        await client.subscribe(topics_)
        with capture_logs() as logs:
            lost = await _reconnect_after_two_revocations(local, user, topics_)
            await wait_for(lambda: _holds(local, user, topics_[2:]), timeout=10)
    # asked by the refused frame (which checks all four), then stored only by the frame sent a window later
    first, *_, last = ASKED[topics_[2]]
    assert first - lost < WINDOW_S <= last - lost
    waits = [line for line in logs if line["event"] == "client_rate_limited"]
    assert [("subscribe", True)] == [(w["action"], WINDOW_S <= w["wait_s"] <= 1.2 * WINDOW_S) for w in waits]


async def test_fanout_js_subscribes_again_after_rate_limited_once_the_window_passed(local: Local) -> None:
    """fanout.js reconnecting with two of its four topics revoked is refused them (both named), then
    rate_limited: it waits the answer's windowS, subscribes the other two (before, it gave up) and
    comes open."""
    user, topics_ = f"js-{secrets.token_hex(3)}", _organizations("j")
    options = {"heartbeatS": 0.2, "backoffBaseMs": 50}
    async with fanout_js(local, user, options=options, topics=topics_) as js:
        lost = await _reconnect_after_two_revocations(local, user, topics_)
        await wait_for(lambda: _holds(local, user, topics_[2:]), timeout=10)
        await wait_for(lambda: 2 <= sum(1 for s in js.of("status") if s["status"] == "open"))
    first, *_, last = ASKED[topics_[2]]
    assert first - lost < WINDOW_S <= last - lost


async def test_a_presence_query_refused_rate_limited_is_answered_once_the_window_passed(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With two users per window, a query of two is answered at once and the next, of one, is refused:
    ``request`` sends it again after windowS and returns its presence.ok."""
    monkeypatch.setattr(presence, "PRESENCE_USERS_PER_WINDOW", 2)
    user = f"pq-{secrets.token_hex(3)}"
    async with local.client(user) as client:
        await asyncio.wait_for(client.connected.wait(), 10)
        await _window_start()
        first = await client.request("presence.query", userIds=[user, "u2"])
        asked = time.monotonic()
        second = await client.request("presence.query", userIds=[user])
    assert ("presence.ok", "presence.ok") == (first["type"], second["type"])
    assert time.monotonic() - asked >= WINDOW_S
    assert [{"userId": user, "status": "online", "lastSeenAt": None}] == second["payload"]["users"]


async def test_a_frame_refused_rate_limited_every_time_is_sent_again_three_times_then_refused(
    local: Local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribe naming more topics than a window allows can never pass: the client sends it again
    three times, a window (1 s here) apart, and then the refusal is the answer (subscribe raises); an
    unsubscribe refused rate_limited is not sent again at all."""
    monkeypatch.setattr(limits, "WINDOW_S", 1)
    monkeypatch.setattr(topics, "UNSUBSCRIBES_PER_WINDOW", 1)
    user = f"rl-{secrets.token_hex(3)}"
    async with local.client(user) as client:
        await asyncio.wait_for(client.connected.wait(), 10)
        started = time.monotonic()
        with capture_logs() as logs, pytest.raises(PermissionError, match="rate_limited"):
            await client.subscribe([f"event:{i}" for i in range(SUBSCRIBE_TOPICS + 1)])
        took = time.monotonic() - started
        await asyncio.sleep(1 - time.time() % 1)  # the two frames at the top of one window
        with capture_logs() as unsubscribe_logs:
            answers = [await client.request("unsubscribe", topics=["event:0"]) for _ in range(2)]
    assert 3 == sum(1 for line in logs if line["event"] == "client_rate_limited")
    assert 3 <= took
    codes = [a["payload"].get("code", a["type"]) for a in answers]
    assert ["unsubscribe.ok", "rate_limited"] == codes
    assert [] == [line for line in unsubscribe_logs if line["event"] == "client_rate_limited"]
