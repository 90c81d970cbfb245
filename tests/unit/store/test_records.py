"""How the worker reads a connection record: malformed ones skipped, declared payload versions kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import bson
from bson.datetime_ms import DatetimeMS

from fanout.envelope import Target
from fanout.store import ConnectionStore
from fanout.store.connections import mongo_client
from fanout.store.records import live, now_utc, to_connection
from tests.conftest import dev_settings
from tests.unit.store.conftest import SKIPPED, resolve_all


async def test_malformed_records_are_skipped_and_reported(store: ConnectionStore) -> None:
    """Records with a missing field or a wrong type are skipped and reported; the good ones beside them
    (same user, and other users sharing the merged query) are all found."""
    future = datetime.now(UTC) + timedelta(minutes=5)
    good = {"domainName": "h", "stage": "s", "connectedAt": datetime.now(UTC), "expiresAt": future}
    await store._col.insert_many(
        [
            {"connectionId": "ok1", "userId": "u1", **good},
            {"connectionId": "ok2", "userId": "u2", **good},
            {"connectionId": "bad-date", "userId": "u1", **(good | {"connectedAt": "yesterday"})},
            {"connectionId": "no-stage", "userId": "u1", **{k: v for k, v in good.items() if k != "stage"}},
            {"connectionId": "bad-domain", "userId": "u2", **(good | {"domainName": 42})},
            {"connectionId": "user-list", "userId": ["u1", "u2"], **good},
            {"connectionId": 7, "userId": "u2", **good},
        ]
    )
    found = await asyncio.gather(
        resolve_all(store, Target(user_ids=["u1"])), resolve_all(store, Target(user_ids=["u2"]))
    )
    assert [["ok1"], ["ok2"]] == [[c.connection_id for c in conns] for conns in found]
    assert {"bad-date", "no-stage", "bad-domain", "user-list", 7} == {d["connectionId"] for d in SKIPPED}


async def test_declared_payload_versions_reach_the_worker_with_the_record(store: ConnectionStore) -> None:
    """A record's payloads (type@version entries) come back as a lookup on the Connection; malformed
    entries are ignored, and a record without the field has none."""
    await store.put("c1", "u1", "127.0.0.1:1", "local", ttl_s=60)
    await store.put("c2", "u1", "127.0.0.1:1", "local", ttl_s=60)
    assert await store.hello("c1", 1, {"chat.message": [1, 2]})
    await store._col.update_one({"connectionId": "c2"}, {"$set": {"payloads": ["chat.read@x", 7, "@2"]}})
    found = {c.connection_id: c for c in await resolve_all(store, Target(user_ids=["u1"]))}
    assert {"chat.message": frozenset({1, 2})} == found["c1"].payloads
    assert found["c1"].speaks("chat.message", 2) and found["c1"].speaks("notification.new", 1)
    assert not found["c1"].speaks("notification.new", 2)
    assert {} == found["c2"].payloads and found["c2"].speaks("chat.read", 1)
    assert not await store.hello("nobody", 1, None)


async def test_a_record_dated_past_pythons_range_is_skipped_not_fatal_to_its_batch() -> None:
    """A record whose connectedAt or expiresAt lies past year 9999 (MongoDB stores JavaScript dates to year
    275760) decodes under the worker's client options and is skipped; the records beside it in the same
    reply are read as usual."""
    client = mongo_client(dev_settings())
    now = now_utc()
    good = {"connectionId": "ok", "userId": "u1", "domainName": "h", "stage": "s", "connectedAt": now,
            "expiresAt": now + timedelta(hours=1)}  # fmt: skip
    far = DatetimeMS(8_640_000_000_000_000)  # new Date(8.64e15): year 275760
    reply = b"".join(
        bson.encode(doc)
        for doc in (good | {"connectionId": "late", "connectedAt": far}, good | {"expiresAt": far}, good)
    )
    try:
        late, never, ok = bson.decode_all(reply, client.codec_options)  # as a find's batch is decoded
    finally:
        await client.close()
    assert (None, False) == (to_connection(late), live(never, now))
    assert ("ok", True) == (getattr(to_connection(ok), "connection_id", None), live(ok, now))
