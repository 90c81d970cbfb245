"""The connection store's indexes and writes against a real MongoDB-wire server (SecantusDB)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

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
