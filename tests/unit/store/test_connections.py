"""The connection store's indexes and writes against a real MongoDB-wire server (SecantusDB)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fanout.envelope import Target
from fanout.store import ConnectionStore
from tests.unit.store.conftest import resolve_all


async def test_indexes_match_the_existing_record_shape(store: ConnectionStore) -> None:
    """Unique connectionId, userId lookup and a TTL index on expiresAt; creating them twice is harmless."""
    await store.ensure_indexes()
    info = await store._col.index_information()
    assert info["connectionId_1"]["unique"] is True
    assert "userId_1" in info
    assert 0 == info["expiresAt_1"]["expireAfterSeconds"]


async def test_prune_never_deletes_a_newer_connection_with_the_same_id(store: ConnectionStore) -> None:
    """Pruning a stale view of a connection leaves a record that was re-created after it."""
    await store.put("p1", "u1", "h", "s", ttl_s=60)
    [old] = await resolve_all(store, Target(user_ids=["u1"]))
    assert old.connected_at is not None
    await store._col.update_one(
        {"connectionId": "p1"}, {"$set": {"connectedAt": old.connected_at + timedelta(seconds=5)}}
    )
    assert not await store.prune(old)
    assert await store.get("p1") is not None
    [fresh] = await resolve_all(store, Target(user_ids=["u1"]))
    assert await store.prune(fresh)
    assert await store.get("p1") is None


async def test_a_rate_window_only_moves_forward(store: ConnectionStore) -> None:
    """A frame whose window is older than the record's (a container's clock a little behind, frames on
    either side of a boundary) counts in the record's newer window: frames alternating between windows
    100 and 101 each opened theirs again and reset the count, so a limit of 1 passed them all. A record
    whose window is no number (hostile or corrupt) is opened afresh rather than refusing for ever."""
    await store.put("w1", "u1", "h", "s", ttl_s=60)
    assert [True, False, False, False] == [
        await store.take_slot("w1", "typing", window, limit=1, window_s=1) for window in (101, 100, 101, 100)
    ]
    assert await store.take_slot("w1", "typing", 102, limit=1, window_s=1)
    await store._col.update_one({"connectionId": "w1"}, {"$set": {"typingWindow": "x", "typingCount": 9}})
    assert [True, False] == [
        await store.take_slot("w1", "typing", 103, limit=1, window_s=1) for _ in range(2)
    ]
    assert not await store.take_slot("missing", "typing", 103, limit=1, window_s=1)


async def test_a_rate_window_far_ahead_or_a_count_that_is_no_number_is_opened_afresh(
    store: ConnectionStore,
) -> None:
    """A record whose window lies more than one window ahead (a clock far ahead, a corrupt value) refused
    the connection until the clock reached it; a count holding an array matched ``$lte`` by an element and
    then failed the ``$inc`` (a 500 for the frame). Both are opened afresh in the frame's window; a window
    one ahead still counts (the clock a little behind)."""
    await store.put("w2", "u1", "h", "s", ttl_s=60)
    await store._col.update_one({"connectionId": "w2"}, {"$set": {"typingWindow": 10**9, "typingCount": 5}})
    assert [True, False] == [
        await store.take_slot("w2", "typing", 100, limit=1, window_s=10) for _ in range(2)
    ]
    assert 100 == (await store._col.find_one({"connectionId": "w2"}))["typingWindow"]
    for hostile in ([0], [0, 99], "x", None):
        await store._col.update_one({"connectionId": "w2"}, {"$set": {"typingCount": hostile}})
        assert await store.take_slot("w2", "typing", 100, limit=2, window_s=10), hostile
        assert 1 == (await store._col.find_one({"connectionId": "w2"}))["typingCount"]
    await store._col.update_one({"connectionId": "w2"}, {"$set": {"typingWindow": 110, "typingCount": 1}})
    assert not await store.take_slot("w2", "typing", 100, limit=1, window_s=10)
    assert 110 == (await store._col.find_one({"connectionId": "w2"}))["typingWindow"]


async def test_touch_refreshes_expiry(store: ConnectionStore) -> None:
    """A ping moves expiresAt forward; an unknown connection reports False."""
    await store.put("x1", "u1", "h", "s", ttl_s=10)
    before = (await store.get("x1") or {})["expiresAt"]
    assert "u1" == await store.touch("x1", ttl_s=3600)
    assert (await store.get("x1") or {})["expiresAt"] > before
    assert not await store.touch("missing", ttl_s=10)


async def test_an_upgrade_is_asked_once_per_connection_and_key_even_concurrently(
    store: ConnectionStore,
) -> None:
    """Ten workers meeting the same unsupported event at once: one of them asks the connection to upgrade;
    another type or version is a new question, and a missing record is never asked."""
    await store.put("c1", "u1", "127.0.0.1:1", "local", ttl_s=60)
    answers = await asyncio.gather(*(store.ask_upgrade_once("c1", "chat.message@2") for _ in range(10)))
    assert 1 == sum(answers)
    assert await store.ask_upgrade_once("c1", "chat.message@3")
    assert not await store.ask_upgrade_once("c1", "chat.message@2")
    assert not await store.ask_upgrade_once("nobody", "chat.message@2")


async def test_revoke_takes_the_topics_off_every_record_of_the_users_only(store: ConnectionStore) -> None:
    """One revocation takes organization:o1 off both tabs of u1, expired record included, leaves u1's own
    user: topic (even when named) and its other topics, and leaves u2's records as they were."""
    for cid, user in (("t1", "u1"), ("t2", "u1"), ("t3", "u2")):
        await store.put(cid, user, "h", "s", ttl_s=60)
        held = await store.subscribe(cid, [f"user:{user}", "organization:o1", "event:42"], cap=100)
        assert held is not None
    await store._col.drop_index("expiresAt_1")  # so the TTL monitor cannot take the expired record first
    await store._col.update_one({"connectionId": "t2"}, {"$set": {"expiresAt": datetime.now(UTC)}})
    assert 2 == await store.revoke(["u1", "u9"], ["organization:o1", "user:u1", "conversation:c9"])
    topics = {cid: (await store.get(cid) or {})["topics"] for cid in ("t1", "t2", "t3")}
    assert {
        "t1": ["user:u1", "event:42"],
        "t2": ["user:u1", "event:42"],
        "t3": ["user:u2", "organization:o1", "event:42"],
    } == topics
    assert ["t3"] == [c.connection_id for c in await resolve_all(store, Target(topics=["organization:o1"]))]
    assert 0 == await store.revoke(["u1"], ["organization:o1"])
    assert 0 == await store.revoke(["u1"], ["user:u1"])


async def test_revoke_passes_a_record_whose_topics_is_one_string_and_still_reaches_the_others(
    store: ConnectionStore,
) -> None:
    """A malformed record of the user holding its topic as a string (not the lifecycle's list) neither
    fails the revocation ($pull refuses a non-array) nor keeps the user's other tab on the topic: the
    list loses it, the string record is emptied, and a topic lookup reaches neither."""
    for cid in ("s1", "t1"):
        await store.put(cid, "u1", "h", "s", ttl_s=60)
    await store._col.update_one({"connectionId": "s1"}, {"$set": {"topics": "organization:o1"}})
    assert await store.subscribe("t1", ["organization:o1", "event:42"], cap=100) is not None
    assert 2 == await store.revoke(["u1"], ["organization:o1"])
    assert [[], ["event:42"]] == [(await store.get(c) or {})["topics"] for c in ("s1", "t1")]
    assert [] == await resolve_all(store, Target(topics=["organization:o1"]))
