"""``$connect`` on a connection id that already has a record: the new connection starts from nothing; and
the limit of live connections per user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import MongoClient

from fanout.config import DEV_JWT_SECRET
from fanout.lifecycle import Lifecycle
from fanout.lifecycle.connect import IDLE_S
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


async def test_a_record_unseen_for_the_idle_timeout_does_not_hold_a_place(
    make_lifecycle: MakeLifecycle, mongo_server: Server
) -> None:
    """A record whose $disconnect was lost stops counting once it has not been seen for API Gateway's
    idle timeout (a live client pings every 30 s): a user is never locked out by their lost tabs."""
    lc = await make_lifecycle(max_connections_per_user=1)
    assert 200 == await _status(lc, "c1", "u1")
    assert 429 == await _status(lc, "c2", "u1")
    await send(lc, "c1", {"action": "ping"})  # a frame keeps it counted
    assert 429 == await _status(lc, "c2", "u1")

    long_ago = datetime.now(UTC) - timedelta(seconds=IDLE_S + 5)
    settings = lc.services.settings
    with MongoClient(mongo_server.url) as mongo:
        records = mongo[settings.mongo_db][settings.connections_collection]
        assert (
            1 == records.update_one({"connectionId": "c1"}, {"$set": {"lastSeenAt": long_ago}}).matched_count
        )
    assert 200 == await _status(lc, "c2", "u1")


async def test_no_limit_when_it_is_zero(make_lifecycle: MakeLifecycle) -> None:
    """FANOUT_MAX_CONNECTIONS_PER_USER=0 lets a user hold any number of connections."""
    lc = await make_lifecycle(max_connections_per_user=0)
    assert [200] * 4 == [await _status(lc, f"c{i}", "u1") for i in range(4)]
    assert 0 == _refused(lc)
