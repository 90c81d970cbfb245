"""Per-connection limits of subscribe, unsubscribe, presence.query and hello, on a real MongoDB: the frame
past its connection's limit is answered rate_limited (max, windowS) before the product's topic check, the
MongoDB reads or the record write it would cause; a malformed frame is still told what is wrong with it;
another connection of the same user has a window of its own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent

from fanout.lifecycle import Lifecycle, limits
from fanout.lifecycle.hello import HELLOS_PER_WINDOW
from fanout.lifecycle.presence import MAX_QUERY, PRESENCE_USERS_PER_WINDOW
from fanout.lifecycle.topics import MAX_TOPICS, SUBSCRIBE_TOPICS_PER_WINDOW, UNSUBSCRIBES_PER_WINDOW
from fanout.store import ConnectionStore
from tests.conftest import Server, dev_settings
from tests.helpers import at_window_start
from tests.unit.lifecycle import events

CHECKED: list[str] = []


def organizations(user_id: str, topic: str) -> bool:
    """A product check for tests that allows every organization and counts its calls."""
    CHECKED.append(topic)
    return topic.startswith("organization:")


@dataclass
class Commands(CommandListener):
    """The MongoDB commands the lifecycle's client started, by name, in order."""

    names: list[str] = field(default_factory=list)

    def started(self, event: CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def setup(mongo_server: Server) -> AsyncIterator[tuple[Lifecycle, Commands]]:
    """A lifecycle checking organizations with ``organizations``; connections c1 and c2 of u1."""
    settings = dev_settings(mongo=mongo_server, topic_policy=f"{__name__}:organizations")
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo(), tz_aware=True, event_listeners=[commands]
    )
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    await store.ensure_indexes()
    for cid in ("c1", "c2"):
        await store.put(cid, "u1", events.DOMAIN, "production", ttl_s=60)
    CHECKED.clear()
    await at_window_start()  # a test's frames (up to a hundred, a second or two) share one window
    yield Lifecycle(store, settings), commands
    await client.drop_database(settings.mongo_db)
    await client.close()


async def _send(lc: Lifecycle, cid: str, action: str, **fields: Any) -> dict[str, Any]:
    answer = await lc.handle(events.message(cid, json.dumps({"action": action, **fields})))
    return dict(json.loads(answer["body"]))


def _code(answer: dict[str, Any]) -> str:
    return str(answer["payload"].get("code", answer["type"]))


def _limited(most: int) -> dict[str, Any]:
    return {"code": "rate_limited", "max": most, "windowS": limits.WINDOW_S}


async def test_subscribes_count_the_topics_they_name_and_the_refused_one_asks_the_product_nothing(
    setup: tuple[Lifecycle, Commands],
) -> None:
    """Nine frames of 100 organizations and one of 60 pass (each topic asked twice: 1,920 checks); a frame
    of 50 more would pass 1,000 and is refused without a check while one of 40 still fits; then one topic
    of subscribe or notification.subscribe is refused, a malformed frame is still bad_topics, and the
    user's other connection subscribes."""
    lc, _ = setup
    assert 10 * MAX_TOPICS == SUBSCRIBE_TOPICS_PER_WINDOW
    hundred = [f"organization:{i}" for i in range(MAX_TOPICS)]
    passed = [await _send(lc, "c1", "subscribe", topics=hundred) for _ in range(9)]
    passed.append(await _send(lc, "c1", "subscribe", topics=hundred[:60]))
    assert ["subscribe.ok"] * 10 == [a["type"] for a in passed]
    assert 2 * 960 == len(CHECKED)
    over = await _send(lc, "c1", "subscribe", id="s1", topics=hundred[:50])
    assert ("system.error", "s1", _limited(SUBSCRIBE_TOPICS_PER_WINDOW)) == (
        over["type"], over["replyTo"], over["payload"])  # fmt: skip
    assert 2 * 960 == len(CHECKED)
    assert "subscribe.ok" == _code(await _send(lc, "c1", "subscribe", topics=hundred[:40]))
    assert 2 * 1000 == len(CHECKED)
    refused = [
        await _send(lc, "c1", action, topics=["organization:late"])
        for action in ("subscribe", "notification.subscribe")
    ]
    assert [_limited(SUBSCRIBE_TOPICS_PER_WINDOW)] * 2 == [a["payload"] for a in refused]
    assert "bad_topics" == _code(await _send(lc, "c1", "subscribe", topics=["no-kind"]))
    other = await _send(lc, "c2", "subscribe", topics=["organization:late"])
    assert ("subscribe.ok", ["organization:late"]) == (other["type"], other["payload"]["topics"])
    assert 2 * 1000 + 2 == len(CHECKED)


async def test_unsubscribes_past_the_limit_are_refused_and_take_nothing_off(
    setup: tuple[Lifecycle, Commands],
) -> None:
    """A connection's 100 unsubscribe frames of a window pass; the next is refused rate_limited and the
    topic it names stays held."""
    lc, _ = setup
    assert "subscribe.ok" == _code(await _send(lc, "c1", "subscribe", topics=["event:kept"]))
    passed = [
        await _send(lc, "c1", "unsubscribe", topics=[f"event:{i}"]) for i in range(UNSUBSCRIBES_PER_WINDOW)
    ]
    assert ["unsubscribe.ok"] * UNSUBSCRIBES_PER_WINDOW == [a["type"] for a in passed]
    over = await _send(lc, "c1", "unsubscribe", topics=["event:kept"])
    assert _limited(UNSUBSCRIBES_PER_WINDOW) == over["payload"]
    assert ["event:kept"] == (await lc.services.store.get("c1") or {})["topics"]


async def test_presence_queries_count_the_users_they_name_and_the_refused_one_reads_nothing(
    setup: tuple[Lifecycle, Commands],
) -> None:
    """Five queries of 100 users pass, each reading MongoDB beyond the record; the next, of one user, is
    refused rate_limited having only refreshed and counted on the record; a malformed query is still
    bad_request, and the user's other connection is answered."""
    lc, commands = setup
    assert 5 * MAX_QUERY == PRESENCE_USERS_PER_WINDOW
    hundred = [f"u{i}" for i in range(MAX_QUERY)]
    for _ in range(5):
        commands.names.clear()
        assert "presence.ok" == _code(await _send(lc, "c1", "presence.query", userIds=hundred))
    read = set(commands.names)
    commands.names.clear()
    over = await _send(lc, "c1", "presence.query", userIds=["u2"])
    assert _limited(PRESENCE_USERS_PER_WINDOW) == over["payload"]
    assert {"findAndModify", "update"} >= set(commands.names)  # the frame's refresh and the count
    assert read - {"findAndModify", "update"}, "an answered query reads MongoDB: the check above is blind"
    assert "bad_request" == _code(await _send(lc, "c1", "presence.query", userIds=[]))
    assert "presence.ok" == _code(await _send(lc, "c2", "presence.query", userIds=["u2"]))


async def test_hellos_past_the_limit_are_refused_and_leave_the_record_as_it_was(
    setup: tuple[Lifecycle, Commands],
) -> None:
    """Five hellos pass; a sixth declaring newer payload versions is refused rate_limited and the record
    keeps what the fifth stored; a malformed hello is still bad_hello; the other connection says hello."""
    lc, _ = setup
    passed = [await _send(lc, "c1", "hello", protocols=[1]) for _ in range(HELLOS_PER_WINDOW)]
    assert ["system.connected"] * HELLOS_PER_WINDOW == [a["type"] for a in passed]
    over = await _send(lc, "c1", "hello", protocols=[1], payloads={"chat.message": [1, 2]})
    assert _limited(HELLOS_PER_WINDOW) == over["payload"]
    assert "payloads" not in (await lc.services.store.get("c1") or {})
    assert "bad_hello" == _code(await _send(lc, "c1", "hello", protocols="1"))
    assert "system.connected" == _code(await _send(lc, "c2", "hello", protocols=[1]))
