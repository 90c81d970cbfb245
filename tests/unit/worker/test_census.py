"""The socket census against a real MongoDB (SecantusDB): live connections, TTL removals, one sampler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fanout.metrics import Metrics
from fanout.worker.census import LEASES, Census, Lease

Db = Any


def _census(db: Db, interval_s: float = 30) -> tuple[Census, Metrics]:
    metrics = Metrics(CollectorRegistry())
    lease = Lease(db[LEASES], "census", ttl_s=3 * interval_s)
    return Census(db.websocketconnections, lease, metrics, interval_s), metrics


def _record(cid: str, expires_in_s: float) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "connectionId": cid,
        "userId": "u",
        "connectedAt": now,
        "expiresAt": now + timedelta(seconds=expires_in_s),
    }


def _value(metrics: Metrics, name: str) -> float:
    [family] = [f for f in metrics.registry.collect() if f.name == name]
    return sum(s.value for s in family.samples if s.name in (name, f"{name}_total"))


async def test_active_connections_are_the_live_records(db: Db) -> None:
    """The gauge counts records whose expiresAt is ahead, not the expired ones awaiting the TTL monitor."""
    await db.websocketconnections.insert_many(
        [_record(f"live{i}", 600) for i in range(5)] + [_record(f"stale{i}", -5) for i in range(3)]
    )
    census, metrics = _census(db)
    assert await census.sample()
    assert 5 == _value(metrics, "fanout_active_connections")


async def test_expired_counts_records_gone_after_their_expiry_only(db: Db) -> None:
    """Between two samples: expired records removed count; one deleted before expiry or refreshed does not."""
    col = db.websocketconnections
    await col.insert_many(
        [_record(f"stale{i}", -5) for i in range(4)]  # past expiresAt, still there: the monitor's next
        + [_record("soon-closed", 600), _record("refreshed", -5), _record("live", 600)]
    )
    census, metrics = _census(db, interval_s=600)  # "soon-closed" is due within two intervals
    await census.sample()
    assert 0 == _value(metrics, "fanout_connections_expired")
    # The TTL monitor removes three stale records; a $disconnect removes one live; a frame refreshes one.
    await col.delete_many({"connectionId": {"$in": ["stale0", "stale1", "stale2", "soon-closed"]}})
    later = datetime.now(UTC) + timedelta(seconds=600)
    await col.update_one({"connectionId": "refreshed"}, {"$set": {"expiresAt": later}})
    await census.sample()
    assert 3 == _value(metrics, "fanout_connections_expired")
    await col.delete_one({"connectionId": "stale3"})
    await census.sample()
    assert 4 == _value(metrics, "fanout_connections_expired")
    await census.sample()  # nothing more went: nothing more counted
    assert 4 == _value(metrics, "fanout_connections_expired")


async def test_one_holder_of_the_lease_samples(db: Db) -> None:
    """Of two processes, only the lease holder samples; the other reports 0 until the lease lapses."""
    await db.websocketconnections.insert_many([_record(f"c{i}", 600) for i in range(2)])
    first, first_metrics = _census(db)
    second, second_metrics = _census(db)
    assert await first.sample()
    assert not await second.sample()
    assert await first.sample()  # renewing its own lease
    assert (2, 0) == (
        _value(first_metrics, "fanout_active_connections"),
        _value(second_metrics, "fanout_active_connections"),
    )
    lapsed = datetime.now(UTC) - timedelta(seconds=1)
    await db[LEASES].update_one({"_id": "census"}, {"$set": {"until": lapsed}})  # the holder died
    assert await second.sample()
    assert not await first.sample()
    assert 0 == _value(first_metrics, "fanout_active_connections")
    assert 2 == _value(second_metrics, "fanout_active_connections")


async def test_users_whose_records_lapsed_are_told_to_presence(db: Db) -> None:
    """At the sample after a record was noted, its user is handed to on_lapsed once its expiresAt has
    passed, whether the TTL monitor removed it or not, with its lastSeenAt; a refreshed, a live or a
    disconnected-before-expiry record names nobody."""
    col = db.websocketconnections
    seen = (datetime.now(UTC) - timedelta(minutes=3)).replace(microsecond=0)  # MongoDB keeps milliseconds
    records = [
        _record("gone", -5) | {"userId": "a", "lastSeenAt": seen},
        _record("still-there", -5) | {"userId": "b"},
        _record("refreshed", -5) | {"userId": "c"},
        _record("closed", 600) | {"userId": "d"},
        _record("live", 600) | {"userId": "e"},
    ]
    await col.insert_many(records)
    told: list[dict[str, datetime]] = []

    async def lapsed(users: dict[str, datetime]) -> None:
        told.append(users)

    census, _ = _census(db, interval_s=600)
    census.on_lapsed = lapsed
    await census.sample()
    assert [] == told  # nothing was noted before the first sample
    await col.delete_many({"connectionId": {"$in": ["gone", "closed"]}})
    later = datetime.now(UTC) + timedelta(seconds=600)
    await col.update_one({"connectionId": "refreshed"}, {"$set": {"expiresAt": later}})
    await census.sample()
    [users] = told
    assert ["a", "b"] == sorted(users)
    assert seen == users["a"]


async def test_a_record_whose_connection_id_is_a_list_does_not_stop_the_census(db: Db) -> None:
    """A hostile record whose connectionId is an array naming a noted id (``$in`` matches it by its
    element) is no record of that id: the noted record gone counts as expired and the sample completes
    (it raised TypeError on every sample, for as long as the record lasted: no gauge, no expiries)."""
    col = db.websocketconnections
    await col.insert_many([_record("stale", -5), _record("live", 600)])
    census, metrics = _census(db, interval_s=600)
    assert await census.sample()
    await col.insert_one({"connectionId": ["stale", "other"], "userId": "u"})
    await col.delete_one({"connectionId": "stale"})
    assert await census.sample()
    assert 1 == _value(metrics, "fanout_connections_expired")


@pytest.mark.parametrize(
    "until",
    ["soon", None, datetime(9999, 1, 1, tzinfo=UTC)],
    ids=["text", "null", "year-9999"],
)
async def test_a_corrupt_lease_is_taken_over(db: Db, until: object) -> None:
    """A lease whose until is no date, or further ahead than any holder renews it (twice its ttl), never
    lapses: it is taken over like a lapsed one, so the census goes on. Before, every process was refused
    the lease for as long as the document lasted (no date, no TTL: for good)."""
    await db[LEASES].insert_one({"_id": "census", "holder": "someone", "until": until})
    await db.websocketconnections.insert_many([_record(f"c{i}", 600) for i in range(2)])
    census, metrics = _census(db)
    assert await census.sample()
    assert 2 == _value(metrics, "fanout_active_connections")
    other, _ = _census(db)
    assert not await other.sample()  # the lease it took is a lease like any other
