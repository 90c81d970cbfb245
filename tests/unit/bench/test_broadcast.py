"""The broadcast phase's virtual records: the shape ``store.put`` writes, found by the worker's shards."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from fanout.attributes import CONNECTION_ID
from fanout.bench.broadcast import virtual_records
from fanout.envelope import Target
from fanout.local.emulator import VIRTUAL_PREFIX
from fanout.store import BUCKETS, ConnectionStore, bucket_of
from tests.conftest import Server


@pytest.fixture
async def store(mongo_server: Server) -> AsyncIterator[ConnectionStore]:
    """A connection store on a fresh collection of a real SecantusDB."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    store = ConnectionStore.from_client(client, "fanout", f"conn_{secrets.token_hex(4)}")
    await store.ensure_indexes()
    yield store
    await store._col.drop()
    await client.close()


def test_virtual_records_come_in_chunks_with_virtual_ids_and_their_bucket() -> None:
    """25 records in chunks of 10: distinct valid virt. ids, each with its own bucket and user."""
    chunks = list(virtual_records(25, "127.0.0.1:1", "local", datetime.now(UTC), chunk=10))
    assert [10, 10, 5] == [len(c) for c in chunks]
    docs = [d for c in chunks for d in c]
    ids = [d["connectionId"] for d in docs]
    assert 25 == len(set(ids)) == len({d["userId"] for d in docs})
    assert all(i.startswith(VIRTUAL_PREFIX) and CONNECTION_ID.fullmatch(i) for i in ids)
    assert [bucket_of(i) for i in ids] == [d["bucket"] for d in docs]
    assert all(d["expiresAt"] > d["connectedAt"] for d in docs)


async def test_virtual_records_have_the_fields_put_writes(store: ConnectionStore) -> None:
    """A virtual record holds exactly the fields of a record written by store.put, of the same types."""
    await store.put("real1", "u1", "127.0.0.1:1", "local", ttl_s=60)
    real = await store.get("real1")
    assert real is not None
    (virtual,) = next(virtual_records(1, "127.0.0.1:1", "local", datetime.now(UTC)))
    assert set(real) == set(virtual)
    assert {k: type(v) for k, v in real.items()} == {k: type(v) for k, v in virtual.items()}


async def test_shards_of_a_broadcast_find_every_virtual_record_once(store: ConnectionStore) -> None:
    """Inserted virtual records are live, and four shards over the buckets resolve each of them once."""
    for docs in virtual_records(300, "127.0.0.1:1", "local", datetime.now(UTC), chunk=100):
        await store._col.insert_many(docs, ordered=False)
    target = Target(broadcast=True)
    edges = [k * BUCKETS // 4 for k in range(5)]
    found = [
        c.connection_id
        for lo, hi in itertools.pairwise(edges)
        async for batch in store.resolve(target, shard=(lo, hi))
        for c in batch
    ]
    assert sorted(found) == [f"{VIRTUAL_PREFIX}{i:06d}" for i in range(300)]
