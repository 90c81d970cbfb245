"""``$connect`` on a connection id that already has a record: the new connection starts from nothing."""

from __future__ import annotations

from fanout.config import DEV_JWT_SECRET
from fanout.tokens import sign
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
