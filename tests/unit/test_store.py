"""The connection store against a real MongoDB-wire server (SecantusDB)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from fanout.envelope import Target
from fanout.store import USER_CHUNK, Connection, ConnectionStore
from tests.conftest import Stack


@pytest.fixture
async def store(stack: Stack) -> AsyncIterator[ConnectionStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    store = ConnectionStore.from_client(client, stack.settings.mongo_db, f"conn_{secrets.token_hex(4)}")
    await store.ensure_indexes()
    yield store
    await store._col.drop()
    await client.close()


async def _all(store: ConnectionStore, target: Target) -> list[Connection]:
    return [c async for batch in store.resolve(target) for c in batch]


async def test_indexes_match_the_existing_record_shape(store: ConnectionStore) -> None:
    """Unique connectionId, userId lookup and a TTL index on expiresAt; creating them twice is harmless."""
    await store.ensure_indexes()
    info = await store._col.index_information()
    assert info["connectionId_1"]["unique"] is True
    assert "userId_1" in info
    assert 0 == info["expiresAt_1"]["expireAfterSeconds"]


async def test_resolve_ignores_expired_records_and_excluded_connections(store: ConnectionStore) -> None:
    """Expired records are skipped before the TTL monitor deletes them; excluded ids are left out."""
    await store.put("c1", "u1", "127.0.0.1:1", "local", ttl_s=60)
    await store.put("c2", "u1", "127.0.0.1:1", "local", ttl_s=60)
    await store.put("c3", "u2", "127.0.0.1:1", "local", ttl_s=60)
    await store._col.update_one(
        {"connectionId": "c2"}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    found = await _all(store, Target(user_ids=["u1", "u2"], exclude_connection_ids=["c3"]))
    assert ["c1"] == [c.connection_id for c in found]
    assert "u1" == found[0].user_id and "local" == found[0].stage


async def test_large_user_lists_are_queried_in_chunks(store: ConnectionStore) -> None:
    """An audience larger than one chunk still resolves every connection exactly once."""
    users = [f"user{i}" for i in range(USER_CHUNK * 2 + 7)]
    now = datetime.now(UTC)
    await store._col.insert_many(
        [
            {
                "connectionId": f"c-{u}",
                "userId": u,
                "domainName": "h",
                "stage": "s",
                "connectedAt": now,
                "lastSeenAt": now,
                "expiresAt": now + timedelta(hours=1),
            }
            for u in users
        ]  # fmt: skip
    )
    batches = [b async for b in store.resolve(Target(user_ids=users))]
    assert len(batches) >= 3
    assert sorted(f"c-{u}" for u in users) == sorted(c.connection_id for b in batches for c in b)


async def test_concurrent_lookups_share_one_query_and_keep_their_own_users(stack: Stack) -> None:
    """Ten events resolved at once cost one find, and each event gets only its own users' records."""
    finds: list[int] = []

    class Finds(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "find":
                finds.append(len(event.command["filter"]["userId"]["$in"]))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.settings.mongo(), tz_aware=True, event_listeners=[Finds()]
    )
    store = ConnectionStore.from_client(client, stack.settings.mongo_db, f"conn_{secrets.token_hex(4)}")
    try:
        for i in range(20):
            await store.put(f"c{i}", f"u{i}", "h", "s", ttl_s=60)
        targets = [Target(user_ids=[f"u{i}", f"u{i + 10}", "nobody"]) for i in range(10)]
        finds.clear()
        found = await asyncio.gather(*(_all(store, t) for t in targets))
        assert [21] == finds  # one query: 20 distinct users plus "nobody", asked once
        for i, conns in enumerate(found):
            assert {f"c{i}", f"c{i + 10}"} == {c.connection_id for c in conns}
    finally:
        await store._col.drop()
        await client.close()


async def test_topics_and_broadcast_resolve(store: ConnectionStore) -> None:
    """Subscribed topics and broadcast both find live connections."""
    await store.put("t1", "u1", "h", "s", ttl_s=60)
    await store.put("t2", "u2", "h", "s", ttl_s=60)
    assert await store.subscribe("t1", ["event:42"])
    assert ["t1"] == [c.connection_id for c in await _all(store, Target(topics=["event:42"]))]
    assert {"t1", "t2"} == {c.connection_id for c in await _all(store, Target(broadcast=True))}


async def test_prune_never_deletes_a_newer_connection_with_the_same_id(store: ConnectionStore) -> None:
    """Pruning a stale view of a connection leaves a record that was re-created after it."""
    await store.put("p1", "u1", "h", "s", ttl_s=60)
    [old] = await _all(store, Target(user_ids=["u1"]))
    assert old.connected_at is not None
    await store._col.update_one(
        {"connectionId": "p1"}, {"$set": {"connectedAt": old.connected_at + timedelta(seconds=5)}}
    )
    assert not await store.prune(old)
    assert await store.get("p1") is not None
    [fresh] = await _all(store, Target(user_ids=["u1"]))
    assert await store.prune(fresh)
    assert await store.get("p1") is None


async def test_touch_refreshes_expiry(store: ConnectionStore) -> None:
    """A ping moves expiresAt forward; an unknown connection reports False."""
    await store.put("x1", "u1", "h", "s", ttl_s=10)
    before = (await store.get("x1") or {})["expiresAt"]
    assert await store.touch("x1", ttl_s=3600)
    assert (await store.get("x1") or {})["expiresAt"] > before
    assert not await store.touch("missing", ttl_s=10)
