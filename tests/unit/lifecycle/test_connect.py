"""``$connect`` on a connection id that already has a record: the new connection starts from nothing; and
the limit of live connections per user."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection

from fanout.config import DEV_JWT_SECRET
from fanout.lifecycle import Lifecycle
from fanout.lifecycle.connect import LIVE_WITHIN_S
from fanout.tokens import sign
from tests.conftest import Server
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle, send


async def test_a_reused_connection_id_keeps_nothing_of_the_previous_users_record(
    make_lifecycle: MakeLifecycle,
) -> None:
    """A $connect whose id still has a record (its $disconnect was lost, the id came again) replaces it:
    the new user inherits neither the old user's topics nor their declared payload versions."""
    lc = await make_lifecycle()
    assert 200 == (await lc.handle(events.connect("c1", token=sign("u1", DEV_JWT_SECRET))))["statusCode"]
    held = await send(lc, "c1", {"action": "subscribe", "topics": ["user:u1"]})
    assert ["user:u1"] == held["payload"]["topics"]
    await send(lc, "c1", {"action": "hello", "payloads": {"chat.message": [2]}})

    assert 200 == (await lc.handle(events.connect("c1", token=sign("u2", DEV_JWT_SECRET))))["statusCode"]

    record = await lc.services.store.get("c1")
    assert record is not None
    assert ("u2", None, None) == (record["userId"], record.get("topics"), record.get("payloads"))
    answer = await send(lc, "c1", {"action": "resume", "positions": {"user:u1": 0}})
    assert ("system.error", "forbidden_stream") == (answer["type"], answer["payload"]["code"])


def _refused(lc: Lifecycle) -> float | None:
    return lc.services.metrics.registry.get_sample_value("fanout_lifecycle_connects_refused_total")


async def _status(lc: Lifecycle, connection_id: str, user: str) -> int:
    return int(
        (await lc.handle(events.connect(connection_id, token=sign(user, DEV_JWT_SECRET))))["statusCode"]
    )


async def test_a_user_at_the_connection_limit_is_refused_and_nothing_is_stored(
    make_lifecycle: MakeLifecycle,
) -> None:
    """With FANOUT_MAX_CONNECTIONS_PER_USER live connections, the user's next $connect is answered 429 and
    stores no record; other users connect as before, and a closed connection frees its place."""
    lc = await make_lifecycle(max_connections_per_user=2)
    assert [200, 200] == [await _status(lc, "c1", "u1"), await _status(lc, "c2", "u1")]

    assert 429 == await _status(lc, "c3", "u1")
    assert await lc.services.store.get("c3") is None
    assert 1 == _refused(lc)
    assert 2 == lc.services.metrics.registry.get_sample_value("fanout_lifecycle_connects_total")
    assert 200 == await _status(lc, "c4", "u2")
    # The same id connecting again replaces its own record: it is not one connection more.
    assert 200 == await _status(lc, "c2", "u1")

    await lc.handle(events.disconnect("c1"))
    assert 200 == await _status(lc, "c3", "u1")
    assert 429 == await _status(lc, "c5", "u1")
    assert 2 == _refused(lc)


@contextmanager
def _records(mongo_server: Server, lc: Lifecycle) -> Iterator[Collection[dict[str, Any]]]:
    settings = lc.services.settings
    with MongoClient[dict[str, Any]](mongo_server.url, tz_aware=True) as mongo:
        yield mongo[settings.mongo_db][settings.connections_collection]


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def test_a_record_unseen_for_six_heartbeats_does_not_hold_a_place(
    make_lifecycle: MakeLifecycle, mongo_server: Server
) -> None:
    """A connection counts while its record was written within LIVE_WITHIN_S (a client pings every 30 s);
    one unseen for longer (its $disconnect lost, or half-open) stops counting, and a frame on it counts it
    again: a user is never locked out by tabs that are gone."""
    lc = await make_lifecycle(max_connections_per_user=1)
    with _records(mongo_server, lc) as records:
        assert 200 == await _status(lc, "c1", "u1")
        records.update_one({"connectionId": "c1"}, {"$set": {"lastSeenAt": _ago(LIVE_WITHIN_S - 30)}})
        assert 429 == await _status(lc, "c2", "u1")

        records.update_one({"connectionId": "c1"}, {"$set": {"lastSeenAt": _ago(LIVE_WITHIN_S + 5)}})
        await send(lc, "c1", {"action": "ping"})  # the frame refreshes lastSeenAt: counted again
        assert 429 == await _status(lc, "c2", "u1")

        records.update_one({"connectionId": "c1"}, {"$set": {"lastSeenAt": _ago(LIVE_WITHIN_S + 5)}})
        assert 200 == await _status(lc, "c2", "u1")


async def test_records_every_lookup_skips_do_not_count(
    make_lifecycle: MakeLifecycle, mongo_server: Server
) -> None:
    """An expired record, or one whose userId is a list naming the user, holds no place."""
    lc = await make_lifecycle(max_connections_per_user=1)
    fresh = {"lastSeenAt": _ago(1), "connectedAt": _ago(2), "domainName": "h", "stage": "s"}
    with _records(mongo_server, lc) as records:
        records.insert_many(
            [
                {"connectionId": "old", "userId": "u1", "expiresAt": _ago(1), **fresh},
                {"connectionId": "list", "userId": ["u1", "u2"], "expiresAt": _ago(-60), **fresh},
            ]
        )
    assert 200 == await _status(lc, "c1", "u1")
    assert 429 == await _status(lc, "c2", "u1")  # the stored one does count


async def test_connects_arriving_together_pass_only_up_to_the_limit(make_lifecycle: MakeLifecycle) -> None:
    """Ten $connects of one user at once with a limit of 2: each counts the records stored before its
    check, so no more than two pass (checked first, stored after, five did), and the refused ones leave no
    record."""
    lc = await make_lifecycle(max_connections_per_user=2)
    statuses = await asyncio.gather(*(_status(lc, f"p{i}", "u1") for i in range(10)))
    admitted = statuses.count(200)
    assert admitted <= 2
    assert 10 - admitted == statuses.count(429) == _refused(lc)
    assert admitted == await lc.services.store._col.count_documents({"userId": "u1"})


async def test_no_limit_when_it_is_zero(make_lifecycle: MakeLifecycle) -> None:
    """FANOUT_MAX_CONNECTIONS_PER_USER=0 lets a user hold any number of connections."""
    lc = await make_lifecycle(max_connections_per_user=0)
    assert [200] * 4 == [await _status(lc, f"c{i}", "u1") for i in range(4)]
    assert 0 == _refused(lc)


async def test_a_connection_silent_for_ten_minutes_gets_no_more_posts(
    make_lifecycle: MakeLifecycle, mongo_server: Server
) -> None:
    """By default a record expires 10 minutes after its last frame (FANOUT_CONNECTION_TTL_S): a socket
    the server's posts alone keep open is past the connection limit's count after 3 silent minutes, and
    is posted to for 7 more at most. So a client holding sockets open with a frame every few minutes holds
    about 10/3 times the limit, not (with the former 2 hours) 40 times."""
    lc = await make_lifecycle(max_connections_per_user=1)
    store = lc.services.store

    async def posted_to() -> list[str]:
        return [doc["connectionId"] for doc in (await store.find_users([["u1"]]))[0]]

    with _records(mongo_server, lc) as records:
        assert 200 == await _status(lc, "c1", "u1")
        record = records.find_one({"connectionId": "c1"})
        assert record is not None
        assert timedelta(seconds=600) == record["expiresAt"] - record["lastSeenAt"]

        def silent_for(seconds: float) -> None:
            back = {"lastSeenAt": _ago(seconds), "expiresAt": _ago(seconds - 600)}
            records.update_one({"connectionId": "c1"}, {"$set": back})

        silent_for(9 * 60)
        assert 200 == await _status(lc, "c2", "u1")  # no longer counted
        assert {"c1", "c2"} == set(await posted_to())  # still posted to
        silent_for(10 * 60 + 1)
        assert ["c2"] == await posted_to()
