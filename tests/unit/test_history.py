"""The history of recent events: one document per event, written once even when received twice, read
only within its window and only by its audience (real MongoDB)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fanout import build_event
from fanout.history import MAX_USERS, History, audience, document
from fanout.store import mongo_client
from tests.catalog_examples import payload
from tests.conftest import Server, dev_settings

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_a_document_holds_the_audience_key_seq_and_frame() -> None:
    """The document names its users, topics, key and seq, keeps the client frame, and expires after the
    window; the event's own expiry is kept as until."""
    body = build_event(
        "chat.message",
        payload=payload("chat.message"),
        user_ids=["u1"],
        topics=["conversation:c9"],
        ordering_key="conversation:c9",
        seq=4,
    )
    doc = document(body, NOW.timestamp() + 60, NOW, window_s=900)
    assert {"_id": body.id, "type": "chat.message", "at": NOW, "users": ["u1"], "topics": ["conversation:c9"],
            "key": "conversation:c9", "seq": 4, "frame": body.client_frame.decode(),
            "until": NOW + timedelta(seconds=60), "expiresAt": NOW + timedelta(seconds=900)} == doc  # fmt: skip


def test_a_payload_version_above_1_is_kept_with_the_document() -> None:
    """A version-2 payload's document names its version, so a replay can skip a connection that does not
    speak it; version 1 (the default) is left out."""
    body = build_event("notification.new", payload=payload("notification.new"), user_ids=["u1"])
    assert "version" not in document(body, 0, NOW, 60)
    v2 = body.model_copy(update={"meta": body.meta.model_copy(update={"payload_version": 2})})
    assert 2 == document(v2, 0, NOW, 60)["version"]


def test_a_broadcast_and_a_huge_user_list_are_kept_without_listing_users() -> None:
    """A broadcast is flagged; more than MAX_USERS users are recorded as wide, without the list."""
    assert (
        document(build_event("system.notice", payload=payload("system.notice"), broadcast=True), 0, NOW, 60)[
            "broadcast"
        ]
        is True
    )
    wide = document(
        build_event(
            "system.notice",
            payload=payload("system.notice"),
            user_ids=[f"u{i}" for i in range(MAX_USERS + 1)],
        ),
        0,
        NOW,
        60,
    )
    assert (True, None) == (wide["wide"], wide.get("users"))


@pytest.fixture
async def history(mongo_server: Server) -> AsyncIterator[tuple[History, Any]]:
    settings = dev_settings(mongo=mongo_server, history_window_s=60)
    client = mongo_client(settings)
    kept = History(client[settings.mongo_db], settings)
    await kept.ensure_indexes()
    yield kept, client[settings.mongo_db][settings.history_collection]
    await client.drop_database(settings.mongo_db)
    await client.close()


async def test_concurrent_records_are_one_write_and_a_second_receive_changes_nothing(
    history: tuple[History, Any],
) -> None:
    """Events recorded in one loop turn are all kept; recording one again (a message received twice)
    succeeds and leaves the first document as it was."""
    kept, col = history
    bodies = [
        build_event("notification.new", payload=payload("notification.new"), user_ids=[f"u{i}"])
        for i in range(20)
    ]
    await asyncio.gather(*(kept.record(b, time.time() + 60) for b in bodies))
    first = await col.find_one({"_id": bodies[0].id})
    await asyncio.gather(kept.record(bodies[0], time.time() + 999), kept.record(bodies[1], time.time() + 999))
    assert 20 == await col.count_documents({})
    assert first == await col.find_one({"_id": bodies[0].id})


async def test_reads_see_only_the_audience_and_only_within_the_window(history: tuple[History, Any]) -> None:
    """A user reads its own events, its topics' and broadcasts, never another user's; an event whose
    window has passed is no longer read, even before the TTL monitor removes it."""
    kept, col = history
    mine = build_event(
        "notification.new",
        payload=payload("notification.new"),
        user_ids=["u1"],
        ordering_key="user:u1",
        seq=1,
    )
    topic = build_event(
        "event.rsvp.updated",
        payload=payload("event.rsvp.updated"),
        topics=["event:42"],
        ordering_key="event:42",
        seq=1,
    )
    everyone = build_event("system.notice", payload=payload("system.notice"), broadcast=True)
    theirs = build_event(
        "notification.new",
        payload=payload("notification.new"),
        user_ids=["u2"],
        ordering_key="user:u2",
        seq=1,
    )
    old = build_event(
        "notification.new",
        payload=payload("notification.new"),
        user_ids=["u1"],
        ordering_key="user:u1",
        seq=2,
    )
    for body in (mine, topic, everyone, theirs, old):
        await kept.record(body, time.time() + 3600)
    await col.update_one({"_id": old.id}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}})
    who = audience("u1", ["event:42"])
    since = await kept.since(datetime.now(UTC) - timedelta(minutes=1), who, 10)
    assert {mine.id, topic.id, everyone.id} == {k.id for k in since}
    assert [mine.id] == [k.id for k in await kept.of_key("user:u1", 0, who, 10)]
    assert [] == await kept.of_key("user:u2", 0, who, 10)
    assert None is await kept.recorded_at(old.id, who)
    assert None is await kept.recorded_at(theirs.id, who)  # another user's: as if never kept
    assert None is not await kept.recorded_at(mine.id, who)
    frames = await kept.frames([theirs.id, everyone.id, mine.id], audience("u1", [], wide=False))
    assert [everyone.id, mine.id] == [f.id for f in frames]
    assert mine.client_frame == frames[1].frame


async def test_no_window_keeps_nothing(mongo_server: Server) -> None:
    """With FANOUT_HISTORY_WINDOW_S=0 recording is a no-op and nothing is written."""
    settings = dev_settings(mongo=mongo_server, history_window_s=0)
    client = mongo_client(settings)
    try:
        kept = History(client[settings.mongo_db], settings)
        await kept.record(
            build_event("notification.new", payload=payload("notification.new"), user_ids=["u1"]),
            time.time() + 60,
        )
        assert 0 == await client[settings.mongo_db][settings.history_collection].count_documents({})
    finally:
        await client.close()


async def test_a_frame_whose_type_is_no_event_type_is_not_replayed(history: tuple[History, Any]) -> None:
    """The worker's replay reads only kept frames of an event type: one of another writer's (a text of
    dotted parts the flags would split into every prefix, a number) is left out, the others kept."""
    kept, col = history
    bodies = [
        build_event("notification.new", payload=payload("notification.new"), user_ids=["u1"])
        for _ in range(3)
    ]
    for body in bodies:
        await kept.record(body, time.time() + 60)
    await col.update_one({"_id": bodies[0].id}, {"$set": {"type": "a." * 40_000}})
    await col.update_one({"_id": bodies[1].id}, {"$set": {"type": 7}})
    frames = await kept.frames([b.id for b in bodies], audience("u1", [], wide=False))
    assert [bodies[2].id] == [f.id for f in frames]
