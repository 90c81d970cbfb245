"""Presence from the lifecycle, against a real MongoDB and moto's SQS: online on a user's first connection
only, the offline check scheduled by the last disconnect, and presence.query under the audience rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson.int64 import Int64

from tests.unit.lifecycle.conftest import send
from tests.unit.lifecycle.live import MakeLive

UPDATED = "user.presence.updated"


def _query(*users: Any, **extra: Any) -> dict[str, Any]:
    return {"action": "presence.query", "userIds": list(users), **extra}


async def test_online_once_per_user_and_the_last_disconnect_schedules_the_offline_check(
    make_live: MakeLive,
) -> None:
    """The first tab announces online to the users sharing a conversation; a second tab and closing one of
    two announce nothing; closing the last schedules, one grace period later, an offline event for the same
    audience with a presence check and lastSeenAt."""
    live = await make_live(presence=True, presence_grace_s=1)
    await live.conversation("c9", "u1", "u2")
    await live.conversation("c8", "u1", "u3")
    await live.connect("c1", "u1")
    [online] = live.drain()
    assert (UPDATED, ["u2", "u3"], {"userId": "u1", "status": "online"}, None) == (
        online["body"]["type"], sorted(online["body"]["target"]["userIds"]), online["body"]["payload"],
        online["check"])  # fmt: skip
    await live.connect("c2", "u1")
    await live.disconnect("c1")
    assert [] == live.drain()
    before = datetime.now(UTC)
    await live.disconnect("c2")
    assert [] == live.drain()  # it waits out the grace period
    [check] = live.drain(wait_s=3)
    payload = check["body"]["payload"]
    assert ("presence", UPDATED, "offline") == (check["check"], check["body"]["type"], payload["status"])
    assert ["u2", "u3"] == sorted(check["body"]["target"]["userIds"])
    assert abs(datetime.fromisoformat(payload["lastSeenAt"]) - before) < timedelta(seconds=2)


async def test_the_offline_check_fails_after_a_reconnect_and_holds_otherwise(make_live: MakeLive) -> None:
    """A reconnect within the grace period announces nothing (the user is still online) and makes the
    scheduled check fail; without one the check holds, once per check, and the next connect is announced."""
    live = await make_live(presence=True, presence_grace_s=0)
    await live.conversation("c9", "u1", "u2")
    presence = live.lc.services.live.presence
    await live.connect("c1", "u1")
    await live.disconnect("c1")
    await live.connect("c2", "u1")
    online, check = sorted(live.drain(wait_s=2, at_least=2), key=lambda m: m["check"] or "")
    assert ("online", "presence") == (online["body"]["payload"]["status"], check["check"])
    seen = datetime.fromisoformat(check["body"]["payload"]["lastSeenAt"])
    assert not await presence.offline("u1", seen, check["body"]["id"])
    await live.disconnect("c2")
    [check] = live.drain(wait_s=2)
    assert [True, True] == [await presence.offline("u1", seen, check["body"]["id"]) for _ in range(2)]
    assert not await presence.offline("u1", seen, "evt_another_check")
    await live.connect("c3", "u1")
    assert ["online"] == [m["body"]["payload"]["status"] for m in live.drain()]


async def test_a_user_id_no_ordering_key_can_hold_is_announced_without_one(make_live: MakeLive) -> None:
    """A user id of 1 to 256 characters is a user id (section 8) even where ``user:<id>`` is no ordering key
    (non-ASCII, a space, 124 characters or more): their online and offline go out without a key instead of
    failing (``presence_failed``) and never being announced."""
    live = await make_live(presence=True, presence_grace_s=0)
    odd = ["josé", "ann lee", "u" * 256]
    for i, user in enumerate(odd):
        await live.conversation(f"c{i}", user, "u2")
        await live.connect(f"c{i}", user)
        await live.disconnect(f"c{i}")
    sent = [m["body"] for m in live.drain(wait_s=5, at_least=6)]
    expected = sorted((u, s) for u in odd for s in ("online", "offline"))
    assert expected == sorted((b["payload"]["userId"], b["payload"]["status"]) for b in sent)
    assert [None] * 6 == [b["meta"].get("orderingKey") for b in sent]


async def test_a_user_nobody_may_see_goes_offline_without_a_message(make_live: MakeLive) -> None:
    """With an empty audience nothing is published on connect or disconnect, and the user is offline at
    once with lastSeenAt; with FANOUT_PRESENCE=false nothing at all happens."""
    live = await make_live(presence=True)
    await live.connect("c1", "loner")
    await live.disconnect("c1")
    assert [] == live.drain()
    doc = await live.lc.services.store.database["fanoutpresence"].find_one({"_id": "loner"})
    assert doc is not None and "offline" == doc["status"] and isinstance(doc["lastSeenAt"], datetime)
    quiet = await make_live(presence=False)
    await quiet.conversation("c9", "u1", "u2")
    await quiet.connect("c1", "u1")
    await quiet.disconnect("c1")
    assert [] == quiet.drain(wait_s=1)
    assert await quiet.lc.services.store.database["fanoutpresence"].find_one({"_id": "u1"}) is None


async def test_presence_query_answers_what_the_audience_rule_lets_the_user_see(make_live: MakeLive) -> None:
    """A user sees themself and those they share a conversation with: online from their live records,
    offline with lastSeenAt; a user they share nothing with, and an unknown one, are left out."""
    live = await make_live(presence=True, presence_grace_s=60)
    await live.conversation("c9", "u1", "u2", "u4")
    await live.conversation("c8", "u3", "u5")
    for cid, user in (("c1", "u1"), ("c2", "u2"), ("c3", "u3"), ("c4", "u4")):
        await live.connect(cid, user)
    await live.disconnect("c4")
    answer = await send(live.lc, "c1", _query("u2", "u3", "u4", "u1", "ghost", "u2", id="q1"))
    assert ("presence.ok", "q1") == (answer["type"], answer["replyTo"])
    rows = {row["userId"]: row for row in answer["payload"]["users"]}
    assert ["u1", "u2", "u4"] == sorted(rows)
    assert {"userId": "u2", "status": "online", "lastSeenAt": None} == rows["u2"]
    assert ("offline", True) == (rows["u4"]["status"], rows["u4"]["lastSeenAt"].endswith("Z"))
    assert "online" == rows["u1"]["status"]


async def test_the_products_audience_decides_who_is_told_and_who_may_ask(make_live: MakeLive) -> None:
    """With FANOUT_PRESENCE_AUDIENCE naming a followers function, u1's online goes to its followers, and a
    follower may query u1 while a stranger may not."""
    live = await make_live(presence=True, presence_audience="tests.unit.lifecycle.live:resolve_audience")
    await live.connect("c1", "u1")
    assert [["f1", "f2"]] == [sorted(m["body"]["target"]["userIds"]) for m in live.drain()]
    await live.connect("c2", "f2")
    await live.connect("c3", "stranger")
    assert ["u1"] == [r["userId"] for r in (await send(live.lc, "c2", _query("u1")))["payload"]["users"]]
    assert [] == (await send(live.lc, "c3", _query("u1")))["payload"]["users"]


async def test_hostile_presence_queries_are_bad_requests(make_live: MakeLive) -> None:
    """userIds missing, not a list, empty, over 100 entries or holding a non-string is bad_request."""
    live = await make_live(presence=True)
    await live.connect("c1", "u1")
    for frame in (
        {"action": "presence.query"},
        _query() | {"userIds": "u2"},
        _query(),
        _query(*[f"u{i}" for i in range(101)]),
        _query("u2", {"$gt": ""}),
    ):
        assert {"code": "bad_request", "field": "userIds", "max": 100} == (await send(live.lc, "c1", frame))[
            "payload"
        ]


async def test_a_corrupt_epoch_is_counted_afresh(make_live: MakeLive) -> None:
    """A fanoutpresence document whose epoch is no counter (text, null, an array, an object, NaN, past
    2^53 or at int64's end, negative) is started afresh by the next $connect: that connect is announced
    and counts the epoch, every later connect changes it (the guard of the offline check), and the last
    disconnect's check holds."""
    live = await make_live(presence=True, presence_grace_s=0)
    corrupt = ["x", None, [1, 2], {"n": 1}, float("nan"), 2.0**53, Int64(2**63 - 1), -5]
    db = live.lc.services.store.database
    presence = live.lc.services.live.presence
    for i, epoch in enumerate(corrupt):
        user = f"u{i}"
        await live.conversation(f"c{i}", user, "w")
        await db.fanoutpresence.insert_one({"_id": user, "status": "offline", "epoch": epoch})
        await live.connect(f"a{i}", user)
        first = (await db.fanoutpresence.find_one({"_id": user}))["epoch"]
        await live.connect(f"b{i}", user)
        second = (await db.fanoutpresence.find_one({"_id": user}))["epoch"]
        assert (type(first), type(second)) == (int, int) and first != second, (epoch, first, second)
        assert [(user, "online", None)] == [
            (m["body"]["payload"]["userId"], m["body"]["payload"]["status"], m["check"]) for m in live.drain()
        ]
        await live.disconnect(f"a{i}")
        await live.disconnect(f"b{i}")
        [check] = live.drain(wait_s=2)
        assert await presence.offline(user, datetime.now(UTC), check["body"]["id"]), epoch


async def test_a_record_whose_user_id_is_an_array_is_no_users_connection(make_live: MakeLive) -> None:
    """A connection record whose userId is an array (which equality and $in match by any element) is a
    record of no user, as delivery and the connection limit take it: presence.query answers its users
    offline, and their last disconnect still schedules the offline check, which holds."""
    live = await make_live(presence=True, presence_grace_s=0)
    await live.conversation("c9", "u1", "u3")
    now = datetime.now(UTC)
    await live.lc.services.store.database[live.lc.services.settings.connections_collection].insert_one(
        {
            "connectionId": "forged",
            "userId": ["x", "u3"],
            "domainName": "d",
            "stage": "s",
            "connectedAt": now,
            "expiresAt": now + timedelta(days=1),
        }  # fmt: skip
    )
    await live.connect("c1", "u1")
    [row] = (await send(live.lc, "c1", _query("u3")))["payload"]["users"]
    assert ("u3", "offline") == (row["userId"], row["status"])
    await live.connect("c3", "u3")
    await live.disconnect("c3")
    checks = [m for m in live.drain(wait_s=2, at_least=3) if m["check"] == "presence"]
    assert ["u3"] == [m["body"]["payload"]["userId"] for m in checks]
    assert await live.lc.services.live.presence.offline("u3", datetime.now(UTC), checks[0]["body"]["id"])
