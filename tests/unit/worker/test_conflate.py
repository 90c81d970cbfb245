"""Conflation of hot counters: per key and window the first value goes at once, then only the latest;
across processes a high-water mark in a real MongoDB keeps an older value from following a newer one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from fanout import attributes
from fanout.catalog import EventAttendanceUpdated, policy_for
from fanout.envelope import QueueBody
from fanout.publish import build_event, catalog_event
from fanout.worker.conflate import LATEST, Conflator, key_of, order_of
from fanout.worker.received import Received, parse
from tests.conftest import Server, dev_settings

WINDOW_S = 0.2
ATTENDANCE = policy_for("event.attendance.updated")


def _counter(count: int, seq: int | None = None, **audience: Any) -> QueueBody:
    meta = {"seq": seq} if seq is not None else None
    payload = EventAttendanceUpdated(event_id="42", checked_in_count=count)
    return catalog_event(payload, meta=meta, **({"topics": ["event:42"]} | audience))


def _received(body: QueueBody, part: bool = False) -> Received:
    attrs = attributes.remainder(1, ["c1"]) if part else {}
    return parse({"ReceiptHandle": "r", "MessageId": "m", "Body": body.to_json(), "MessageAttributes": attrs})


@pytest.fixture
async def latest(mongo_server: Server) -> AsyncIterator[Any]:
    """The high-water marks' collection in a fresh database."""
    settings = dev_settings(mongo=mongo_server)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_server.url, tz_aware=True)
    yield client[settings.mongo_db][LATEST]
    await client.drop_database(settings.mongo_db)
    await client.close()


async def test_a_burst_posts_the_first_at_once_and_then_only_the_last() -> None:
    """Of 50 values of one key arriving together, the first is admitted at once, the 48 in between are
    superseded, and the last is admitted at the end of the window."""
    conflator = Conflator(None, WINDOW_S)
    started = time.monotonic()
    assert await conflator.turn("k", 0)
    assert time.monotonic() - started < WINDOW_S / 2
    answers = await asyncio.gather(*(conflator.turn("k", float(i)) for i in range(1, 50)))
    assert [False] * 48 + [True] == answers
    assert WINDOW_S * 0.8 <= time.monotonic() - started < WINDOW_S * 3


async def test_an_older_value_never_replaces_the_one_waiting() -> None:
    """While a newer value waits, an older one (reordered by the queue) is superseded at once and the
    newer one is still admitted; another key has a window of its own."""
    conflator = Conflator(None, WINDOW_S)
    assert await conflator.turn("k", 1)
    waiting = asyncio.create_task(conflator.turn("k", 10))
    await asyncio.sleep(0)
    assert not await conflator.turn("k", 5)
    assert await conflator.turn("other", 5)
    assert await waiting


async def test_a_quiet_key_goes_at_once_again() -> None:
    """Once a window has passed without a value, the next value is admitted without waiting."""
    conflator = Conflator(None, WINDOW_S)
    assert await conflator.turn("k", 1)
    await asyncio.sleep(WINDOW_S * 1.2)
    started = time.monotonic()
    assert await conflator.turn("k", 2)
    assert time.monotonic() - started < WINDOW_S / 2


def test_the_key_separates_types_audiences_and_versions() -> None:
    """Two values of a counter for the same audience share a key; another audience, another counter type
    or an uncatalogued type without an ordering key do not conflate with it."""
    base = key_of(_counter(1))
    assert base is not None and base == key_of(_counter(2))
    rsvp = build_event("event.rsvp.updated", topics=["event:42"], payload={"eventId": "42", "goingCount": 3})
    others = [_counter(1, topics=["event:43"]), _counter(1, topics=[], user_ids=["u1"]), rsvp]
    assert len({base, *(key_of(b) for b in others)}) == 4
    assert key_of(build_event("event.other", topics=["event:42"], payload={})) is None
    assert base == key_of(
        _counter(2, exclude_connection_ids=["c1"])
    )  # the tab that caused it knows its value
    assert (5.0, True) == (order_of(_counter(1, seq=5)), order_of(_counter(1)) > 1e9)  # seq, else sentAt


async def test_only_bulk_types_with_a_key_are_held_and_a_zero_window_holds_nothing() -> None:
    """A notification, a counter with the window at 0 and a body-less message are admitted at once."""
    note = build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1"})
    busy = Conflator(None, WINDOW_S)
    assert await busy.admit(_received(_counter(1)), ATTENDANCE)
    assert await busy.admit(_received(note), policy_for(note.type))
    assert await Conflator(None, 0).admit(_received(_counter(2)), ATTENDANCE)


async def test_across_processes_an_older_value_is_never_posted_after_a_newer_one(latest: Any) -> None:
    """Two processes share the high-water mark: once one posted seq 5, the other's seq 3 is conflated even
    at the start of its window, and so is a remainder of seq 3; seq 5 again (a redelivery) and seq 6 pass."""
    first, second = Conflator(latest, WINDOW_S), Conflator(latest, WINDOW_S)
    assert await first.admit(_received(_counter(50, seq=5)), ATTENDANCE)
    assert not await second.admit(_received(_counter(30, seq=3)), ATTENDANCE)
    assert not await second.admit(_received(_counter(30, seq=3), part=True), ATTENDANCE)
    assert await second.admit(_received(_counter(50, seq=5), part=True), ATTENDANCE)
    await asyncio.sleep(WINDOW_S)
    assert await second.admit(_received(_counter(50, seq=5)), ATTENDANCE)
    assert await first.admit(_received(_counter(60, seq=6)), ATTENDANCE)
    [mark] = await latest.find().to_list(None)
    assert 6.0 == mark["order"]
    assert "expiresAt" in mark  # removed by the TTL monitor a day after the key's last value


def test_only_events_the_conflator_may_hold_are_kept_out_of_per_key_turns() -> None:
    """A counter with an ordering key is conflated (so it takes no per-key turn behind values it would
    drop); a notification with a key, and any counter with the window at 0, are not."""
    note = build_event(
        "notification.new", user_ids=["u1"], payload={"notificationId": "n1"}, ordering_key="user:u1"
    )
    assert (True, False) == (
        Conflator(None, WINDOW_S).conflates(_counter(1)),
        Conflator(None, 0).conflates(_counter(1)),
    )
    assert not Conflator(None, WINDOW_S).conflates(note)


async def test_a_retry_asks_whether_a_newer_value_was_claimed_here_or_by_another_process(latest: Any) -> None:
    """An admitted value's claim answers True once a newer value of its key was claimed: by this process
    (known without a query) or by another one (its high-water mark); an equal or older claim leaves it
    to retry. A value that was admitted without conflation (a notification) has no claim."""
    first, second = Conflator(latest, WINDOW_S), Conflator(latest, WINDOW_S)
    three = await first.admit(_received(_counter(30, seq=3)), ATTENDANCE)
    assert callable(three)
    assert not await three()
    again = await second.admit(_received(_counter(30, seq=3), part=True), ATTENDANCE)
    assert callable(again) and not await again()
    await asyncio.sleep(WINDOW_S)
    assert await first.admit(_received(_counter(40, seq=4)), ATTENDANCE)
    assert await three()  # this process claimed seq 4
    assert await again()  # the other one's claim, read from the high-water mark
    note = build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1"})
    assert True is await first.admit(_received(note), policy_for(note.type))
    alone = Conflator(None, WINDOW_S)  # without MongoDB: what this process claimed
    five = await alone.admit(_received(_counter(50, seq=5)), ATTENDANCE)
    assert callable(five) and not await five()
    await asyncio.sleep(WINDOW_S)
    assert await alone.admit(_received(_counter(60, seq=6)), ATTENDANCE)
    assert await five()


@pytest.mark.parametrize(
    "mark",
    [{"order": "x"}, {"order": None}, {}, {"order": float("nan")}, {"order": float("inf")}, {"order": 1e300}],
    ids=["text", "null", "missing", "nan", "infinity", "beyond-any-order"],
)
async def test_a_corrupt_high_water_mark_is_claimed_over(latest: Any, mark: dict[str, Any]) -> None:
    """A key's mark whose order is no number, NaN, or beyond any order a value can have (a seq is at most
    2^53-1, a sentAt year 9999) is no newer value: the next value claims it and is posted. Before, every
    value of the key was dropped as conflated for as long as the document lasted (without a date
    expiresAt, for good), and so was every remainder of a value below it; a real newer mark still wins."""
    key = key_of(_counter(1, seq=5))
    await latest.insert_one({"_id": key, **mark})
    conflator = Conflator(latest, WINDOW_S)
    assert await conflator.admit(_received(_counter(50, seq=5), part=True), ATTENDANCE)
    assert await conflator.admit(_received(_counter(50, seq=5)), ATTENDANCE)
    stored = await latest.find_one({"_id": key})
    assert (5.0, True) == (stored["order"], "expiresAt" in stored)
    assert not await conflator.admit(_received(_counter(40, seq=4), part=True), ATTENDANCE)
    await asyncio.sleep(WINDOW_S)
    assert not await Conflator(latest, WINDOW_S).admit(_received(_counter(40, seq=4)), ATTENDANCE)


async def test_a_value_dated_far_ahead_is_posted_unconflated_and_claims_nothing(latest: Any) -> None:
    """A counter without ``meta.seq`` whose ``sentAt`` lies a year ahead (a publisher's clock or bug) is
    posted as it is and writes no mark: claimed, its order conflated every later value of the key for a
    day. A value a little ahead (a clock a few seconds fast) is still conflated by its ``sentAt``."""
    ahead = _counter(50).model_copy(update={"sent_at": "2999-01-01T00:00:00Z"})
    conflator = Conflator(latest, WINDOW_S)
    assert True is await conflator.admit(_received(ahead), ATTENDANCE)
    assert [] == await latest.find().to_list(None)
    soon = datetime.now(UTC) + timedelta(seconds=5)
    fast = _counter(60).model_copy(update={"sent_at": soon.isoformat()})
    assert callable(await conflator.admit(_received(fast), ATTENDANCE))
    await asyncio.sleep(WINDOW_S)
    assert not await Conflator(latest, WINDOW_S).admit(_received(_counter(70)), ATTENDANCE)  # 5 s older
