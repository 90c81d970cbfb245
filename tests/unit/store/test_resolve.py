"""The live connections an event reaches, streamed from a real MongoDB-wire server (SecantusDB)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from fanout.envelope import Target
from fanout.store import BUCKETS, ConnectionStore, bucket_of
from fanout.store.resolve import USER_CHUNK
from tests.conftest import Server
from tests.unit.store.conftest import SKIPPED, resolve_all


async def test_resolve_ignores_expired_records_and_excluded_connections(store: ConnectionStore) -> None:
    """Expired records are skipped before the TTL monitor deletes them; excluded ids are left out."""
    await store.put("c1", "u1", "127.0.0.1:1", "local", ttl_s=60)
    await store.put("c2", "u1", "127.0.0.1:1", "local", ttl_s=60)
    await store.put("c3", "u2", "127.0.0.1:1", "local", ttl_s=60)
    await store._col.update_one(
        {"connectionId": "c2"}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    found = await resolve_all(store, Target(user_ids=["u1", "u2"], exclude_connection_ids=["c3"]))
    assert ["c1"] == [c.connection_id for c in found]
    assert "u1" == found[0].user_id and "local" == found[0].stage


async def test_merged_reads_give_each_target_what_resolve_gives_it(store: ConnectionStore) -> None:
    """``find_users`` then ``of_users`` (the worker's merged step, for events of a few users) give each
    target exactly what ``resolve`` yields for it: its users' live, well-formed, not excluded records, each
    once, and never another user's."""
    for cid, user in (("c1", "u1"), ("c2", "u1"), ("c3", "u2"), ("c4", "u3"), ("c5", "u4")):
        await store.put(cid, user, "127.0.0.1:1", "local", ttl_s=60)
    await store._col.update_one(
        {"connectionId": "c2"}, {"$set": {"expiresAt": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    await store._col.insert_one(  # another writer's record without a stage: skipped
        {
            "connectionId": "bad",
            "userId": "u3",
            "domainName": "h",
            "expiresAt": datetime.now(UTC) + timedelta(hours=1),
        }
    )
    targets = [
        Target(user_ids=["u1", "u2"], exclude_connection_ids=["c3"]),
        Target(user_ids=["u3", "nobody"]),
        Target(user_ids=["u2", "u1"]),
        Target(user_ids=["u4"], exclude_connection_ids=["c5"]),
    ]
    found = await store.find_users([t.user_ids for t in targets])
    merged = [
        sorted(c.connection_id for c in store.of_users(f, t)) for f, t in zip(found, targets, strict=True)
    ]
    alone = [sorted(c.connection_id for c in await resolve_all(store, t)) for t in targets]
    assert [["c1"], ["c4"], ["c1", "c3"], []] == merged == alone


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


class Finds(monitoring.CommandListener):
    """Records the number of user ids of every ``find`` a client sends; ``started`` is set at each."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.started_one = asyncio.Event()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.sizes.append(len(event.command["filter"]["userId"]["$in"]))
            self.started_one.set()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def watched(mongo_server: Server) -> AsyncIterator[tuple[ConnectionStore, Finds]]:
    """A store in a fresh collection whose client's finds are recorded, with 30 users (c<i> of u<i>)."""
    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongo_server.url, tz_aware=True, event_listeners=[finds]
    )
    store = ConnectionStore.from_client(client, "fanout", f"conn_{secrets.token_hex(4)}")
    for i in range(30):
        await store.put(f"c{i}", f"u{i}", "h", "s", ttl_s=60)
    await resolve_all(store, Target(user_ids=["warm-up"]))
    finds.sizes.clear()
    finds.started_one.clear()
    yield store, finds
    await store._col.drop()
    await client.close()


async def test_concurrent_lookups_share_one_query_and_keep_their_own_users(
    watched: tuple[ConnectionStore, Finds],
) -> None:
    """Ten events resolved at once cost one find, and each event gets only its own users' records."""
    store, finds = watched
    targets = [Target(user_ids=[f"u{i}", f"u{i + 10}", "nobody"]) for i in range(10)]
    found = await asyncio.gather(*(resolve_all(store, t) for t in targets))
    assert [21] == finds.sizes  # one query: 20 distinct users plus "nobody", asked once
    for i, conns in enumerate(found):
        assert {f"c{i}", f"c{i + 10}"} == {c.connection_id for c in conns}


async def test_lookups_started_while_one_is_in_flight_share_the_next_query(
    watched: tuple[ConnectionStore, Finds],
) -> None:
    """Three receives of ten events, each arriving while the previous find runs: the first receive's
    events go in one find, and the two that arrived meanwhile share the next; each event keeps its users."""
    store, finds = watched
    first = [asyncio.create_task(resolve_all(store, Target(user_ids=[f"u{i}"]))) for i in range(10)]
    await finds.started_one.wait()  # the first receive's find is on the wire
    later = [asyncio.create_task(resolve_all(store, Target(user_ids=[f"u{i}"]))) for i in range(10, 30)]
    found = await asyncio.gather(*first, *later)
    assert [10, 20] == finds.sizes
    assert [[f"c{i}"] for i in range(30)] == [[c.connection_id for c in conns] for conns in found]


async def test_topics_and_broadcast_resolve(store: ConnectionStore) -> None:
    """Subscribed topics and broadcast both find live connections."""
    await store.put("t1", "u1", "h", "s", ttl_s=60)
    await store.put("t2", "u2", "h", "s", ttl_s=60)
    assert ["event:42"] == await store.subscribe("t1", ["event:42"], cap=10)
    assert ["t1"] == [c.connection_id for c in await resolve_all(store, Target(topics=["event:42"]))]
    assert {"t1", "t2"} == {c.connection_id for c in await resolve_all(store, Target(broadcast=True))}


async def test_a_lookup_error_fails_every_waiter(mongo_server: Server) -> None:
    """When the merged query fails, every event waiting on it gets the error; none waits forever."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    store = ConnectionStore.from_client(client, "fanout", "never-used")
    await client.close()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(resolve_all(store, Target(user_ids=[f"u{i}"])) for i in range(3)), return_exceptions=True
        ),
        timeout=10,
    )
    assert all(isinstance(r, Exception) for r in results)


async def test_a_connection_list_only_narrows_the_target(store: ConnectionStore) -> None:
    """by_ids returns only listed connections that the body's own target addresses (and not excluded)."""
    for cid, user in (("a1", "alice"), ("a2", "alice"), ("m1", "mallory"), ("t1", "tom")):
        await store.put(cid, user, "h", "s", ttl_s=60)
    await store.subscribe("t1", ["event:9"], cap=10)
    target = Target(user_ids=["alice"], topics=["event:9"], exclude_connection_ids=["a2"])
    found = [c.connection_id async for batch in store.by_ids(["a1", "a2", "m1", "t1"], target) for c in batch]
    assert ["a1", "t1"] == sorted(found)
    everyone = Target(broadcast=True)
    assert 4 == len([c async for batch in store.by_ids(["a1", "a2", "m1", "t1"], everyone) for c in batch])


async def test_shards_cover_the_audience_once(store: ConnectionStore) -> None:
    """Bucket ranges that cover 0-1024 find each live connection of a broadcast or a topic exactly once,
    records without a bucket included (the last range takes them); expired ones are left out."""
    now = datetime.now(UTC)
    docs = []
    for i in range(1000):
        doc = {
            "connectionId": f"c{i:04d}",
            "userId": f"u{i % 7}",
            "domainName": "h",
            "stage": "s",
            "connectedAt": now,
            "expiresAt": now + timedelta(minutes=5),
            "topics": ["event:1"] if i % 2 else [],
        }
        if i % 10:  # one in ten written before buckets existed
            doc["bucket"] = bucket_of(doc["connectionId"])
        docs.append(doc)
    docs.append({**docs[0], "connectionId": "old", "bucket": 1, "expiresAt": now - timedelta(seconds=1)})
    await store._col.insert_many(docs)  # fmt: skip
    for target, total in ((Target(broadcast=True), 1000), (Target(topics=["event:1"]), 500)):
        assert await store.audience(target, at_most=10_000) >= total
        edges = [k * BUCKETS // 7 for k in range(8)]
        found = [
            c.connection_id
            for shard in itertools.pairwise(edges)
            async for b in store.resolve(target, shard)
            for c in b
        ]
        assert total == len(found) == len(set(found))
    sizes = [
        len([c async for b in store.resolve(Target(broadcast=True), shard) for c in b])
        for shard in itertools.pairwise([k * BUCKETS // 4 for k in range(5)])
    ]
    assert all(150 < n < 400 for n in sizes), f"buckets spread sequential ids evenly: {sizes}"


async def test_single_connections_are_targets_too(store: ConnectionStore) -> None:
    """target.connectionIds reaches those live connections (a reply to one tab), once each, beside users."""
    for cid, user in (("k1", "ann"), ("k2", "ann"), ("k3", "bob")):
        await store.put(cid, user, "h", "s", ttl_s=60)
    found = await resolve_all(store, Target(user_ids=["ann"], connection_ids=["k1", "k3", "gone"]))
    assert ["k1", "k2", "k3"] == sorted(c.connection_id for c in found)


async def test_shards_find_records_with_a_malformed_bucket_at_most_once(store: ConnectionStore) -> None:
    """No record is found by two shards: one whose bucket is an array (another writer's) matches the range
    of each of its numbers, and is skipped and counted there rather than posted once per shard. A record
    with a whole-number bucket, or none, is found exactly once; one with another value by none."""
    now = datetime.now(UTC)
    base = {"userId": "u", "domainName": "h", "stage": "s", "connectedAt": now,
            "expiresAt": now + timedelta(minutes=5)}  # fmt: skip
    buckets: dict[str, Any] = {"null": None, "text": "7", "big": BUCKETS + 5, "negative": -3, "half": 2.5,
                               "both": [3, 700], "empty": [], "flag": True, "double": 5.0,
                               "first": 0, "last": BUCKETS - 1}  # fmt: skip
    docs = [{**base, "connectionId": cid, "bucket": b} for cid, b in buckets.items()]
    await store._col.insert_many([*docs, {**base, "connectionId": "none"}])
    edges = [k * BUCKETS // 4 for k in range(5)]
    found = [
        c.connection_id
        for shard in itertools.pairwise(edges)
        async for b in store.resolve(Target(broadcast=True), shard)
        for c in b
    ]
    assert ["double", "first", "last", "none"] == sorted(found)  # 5.0 is bucket 5 to MongoDB
    assert ["both", "both"] == [d["connectionId"] for d in SKIPPED]  # seen by the shards of 3 and of 700
