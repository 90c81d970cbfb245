"""The relay's lease against a real MongoDB (SecantusDB): one holder, and a corrupt lease taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fanout.outbox.lease import Lease

Db = Any


@pytest.mark.parametrize(
    "expires",
    ["soon", None, "missing", datetime.now(UTC) + timedelta(days=365)],
    ids=["text", "null", "missing", "a-year-ahead"],
)
async def test_a_corrupt_lease_is_taken_over(db: Db, expires: object) -> None:
    """A lease whose expiresAt is no date, or further ahead than any relay renews it (twice the longest
    FANOUT_RELAY_LEASE_S), never lapses: a relay takes it over like an expired one. Before, every relay's
    upsert collided on _id and no relay ever held the lease: the outbox was never relayed again."""
    doc: dict[str, Any] = {"_id": "fanout_outbox", "owner": "someone"}
    if expires != "missing":
        doc["expiresAt"] = expires
    await db.fanout_outbox_lease.insert_one(doc)
    lease = Lease(db.fanout_outbox_lease, "fanout_outbox", "me", ttl_s=10)
    assert await lease.keep()
    other = Lease(db.fanout_outbox_lease, "fanout_outbox", "other", ttl_s=10)
    assert not await other.keep()  # the lease it took is a lease like any other


async def test_a_lease_held_for_the_longest_lifetime_is_not_taken(db: Db) -> None:
    """A relay with the longest FANOUT_RELAY_LEASE_S (300 s) holds it against one with a short lease."""
    long = Lease(db.fanout_outbox_lease, "fanout_outbox", "long", ttl_s=300)
    assert await long.keep()
    short = Lease(db.fanout_outbox_lease, "fanout_outbox", "short", ttl_s=1)
    assert not await short.keep()
