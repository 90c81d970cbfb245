"""Catch-up after reconnect on a real stack: a client resumes with its positions and last event id and
gets exactly what it missed, in order, through the worker; a gap the history no longer covers is a
resync; another user's stream is refused."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout import AsyncPublisher
from fanout.client import Backoff, FanoutClient, Resync, token_url
from fanout.sequence import SequenceAllocator
from fanout.tokens import sign
from tests.catalog_examples import payload
from tests.conftest import Stack, stack_env, start_stack, stop_stack_later
from tests.helpers import Client, connect, scrape, wait_for
from tests.integration.conftest import NO_FAULTS, faults

#: One process for the module (``make test`` runs one per core), so its stack starts once per run.
pytestmark = pytest.mark.xdist_group("resume")


@pytest.fixture(scope="module")
def catchup_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """A stack of this module's own: its gateway and worker share one events queue, so a resume's
    replay reaches the worker, and the fault tests here disturb no other module."""
    stack = start_stack(tmp_path_factory.mktemp("catchup"), stack_env())
    yield stack
    stop_stack_later(stack)


@pytest.fixture
async def mongo(catchup_stack: Stack) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(catchup_stack.settings.mongo(), tz_aware=True)
    yield client
    await client.close()


async def _answer(client: Client, frame_id: str) -> dict[str, Any]:
    await wait_for(lambda: any(f.get("replyTo") == frame_id for f in client.frames))
    return next(f for f in client.frames if f.get("replyTo") == frame_id)


async def _consumed(stack: Stack, outcome: str) -> float:
    return (await scrape(stack.metrics_url)).value("fanout_events_total", outcome=outcome)


async def test_a_resumed_client_gets_exactly_the_missed_events_in_order_then_live_ones(
    catchup_stack: Stack, mongo: AsyncMongoClient[dict[str, Any]], tmp_path: Path
) -> None:
    """Disconnected while 50 events of its stream were published, a client that resumes receives those
    50, in seq order, once each, and then the events published after it resumed."""
    s = catchup_stack.settings
    user = f"rs-{secrets.token_hex(4)}"
    key = f"user:{user}"
    sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        AsyncPublisher(s, sequences=sequences) as pub,
    ):
        first = await connect(es, http, catchup_stack.ws_url, s, user)
        seen = [
            await pub.publish(
                "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key
            )
            for _ in range(3)
        ]
        await wait_for(lambda: len(first.events()) == 3)
        # Published one by one to a standard queue, they may arrive in any order: this raw client does not
        # put them back in seq order as a client library would. The replay below is one message, in order.
        got = sorted(first.events(), key=lambda e: e["seq"])
        assert seen == [e["id"] for e in got]
        last = got[-1]
        assert (key, 3) == (last["key"], last["seq"])
        await first.close()

        before = await _consumed(catchup_stack, "no_connections")
        missed = [
            await pub.publish(
                "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key
            )
            for _ in range(50)
        ]
        await wait_for(lambda: _at_least(catchup_stack, "no_connections", before + 50), timeout=20)

        second = await connect(es, http, catchup_stack.ws_url, s, user)
        await second.ws.send_json(
            {"action": "resume", "id": "r1", "positions": {key: 3}, "lastEventId": last["id"]}
        )
        answer = await _answer(second, "r1")
        assert ("resume.ok", 50) == (answer["type"], answer["payload"]["replaying"])
        await wait_for(lambda: len(second.events()) == 50)
        assert missed == [e["id"] for e in second.events()]
        assert list(range(4, 54)) == [e["seq"] for e in second.events()]

        live = [
            await pub.publish(
                "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key
            )
            for _ in range(3)
        ]
        await wait_for(lambda: len(second.events()) == 53)
        assert missed + live == [e["id"] for e in sorted(second.events(), key=lambda e: e["seq"])]


async def _at_least(stack: Stack, outcome: str, wanted: float) -> bool:
    return await _consumed(stack, outcome) >= wanted


async def test_a_gap_older_than_the_window_is_answered_with_resync(
    catchup_stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """When the kept events no longer reach back to the client's position or last event id (their
    window is over: here their expiresAt is moved into the past, as time would), resume answers
    system.resync with the key's latest seq and events: true, and replays nothing."""
    s = catchup_stack.settings
    user = f"rw-{secrets.token_hex(4)}"
    key = f"user:{user}"
    sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
    history = mongo[s.mongo_db][s.history_collection]
    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        AsyncPublisher(s, sequences=sequences) as pub,
    ):
        ids = [
            await pub.publish(
                "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key
            )
            for _ in range(8)
        ]
        await wait_for(lambda: _kept(history, key, 8))
        past = datetime.now(UTC) - timedelta(seconds=1)
        await history.update_many({"key": key, "seq": {"$lte": 5}}, {"$set": {"expiresAt": past}})

        client = await connect(es, http, catchup_stack.ws_url, s, user)
        await client.ws.send_json(
            {"action": "resume", "id": "r1", "positions": {key: 2}, "lastEventId": ids[1]}
        )
        answer = await _answer(client, "r1")
        assert "system.resync" == answer["type"]
        assert {"keys": {key: 8}, "events": True, "replaying": 0} == answer["payload"]

        # Still covered from seq 5 on (seq 6 is kept): those are replayed, nothing is resynced.
        await client.ws.send_json({"action": "resume", "id": "r2", "positions": {key: 5}})
        answer = await _answer(client, "r2")
        assert ("resume.ok", 3) == (answer["type"], answer["payload"]["replaying"])
        await wait_for(lambda: len(client.events()) == 3)
        assert ids[5:] == [e["id"] for e in client.events()]


async def test_a_failed_history_write_is_counted_and_the_event_is_still_delivered(
    catchup_stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """MongoDB refusing an event's history document (a validator here) does not fail its delivery: the
    client gets the event, the message is settled as delivered, and the failure is counted."""
    s = catchup_stack.settings
    user = f"rf-{secrets.token_hex(4)}"
    db = mongo[s.mongo_db]
    failures = (await scrape(catchup_stack.metrics_url)).value("fanout_history_write_failures_total")
    delivered = await _consumed(catchup_stack, "delivered")
    await db.command({"collMod": s.history_collection, "validator": {"users": {"$ne": user}}})
    try:
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http, AsyncPublisher(s) as pub:
            client = await connect(es, http, catchup_stack.ws_url, s, user)
            event_id = await pub.publish(
                "notification.new", payload=payload("notification.new"), user_ids=[user]
            )
            await wait_for(lambda: len(client.events()) == 1)
            assert event_id == client.events()[0]["id"]
            await wait_for(lambda: _at_least(catchup_stack, "delivered", delivered + 1))
            after = (await scrape(catchup_stack.metrics_url)).value("fanout_history_write_failures_total")
            assert after >= failures + 1
            assert 0 == await db[s.history_collection].count_documents({"_id": event_id})
    finally:
        await db.command({"collMod": s.history_collection, "validator": {}})


async def test_resuming_another_users_stream_is_refused_and_replays_nothing_of_theirs(
    catchup_stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """A client cannot resume another user's stream (forbidden_stream), and a last event id of another
    user's event replays none of that user's events: only its own kept events come back."""
    s = catchup_stack.settings
    victim, intruder = f"rv-{secrets.token_hex(4)}", f"ri-{secrets.token_hex(4)}"
    sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
    history = mongo[s.mongo_db][s.history_collection]
    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        AsyncPublisher(s, sequences=sequences) as pub,
    ):
        theirs = [
            await pub.publish(
                "notification.new",
                payload=payload("notification.new"),
                user_ids=[victim],
                ordering_key=f"user:{victim}",
            )
            for _ in range(3)
        ]
        await wait_for(lambda: _kept(history, f"user:{victim}", 3))
        client = await connect(es, http, catchup_stack.ws_url, s, intruder)
        await client.ws.send_json({"action": "resume", "id": "r1", "positions": {f"user:{victim}": 0}})
        answer = await _answer(client, "r1")
        assert ("system.error", "forbidden_stream") == (answer["type"], answer["payload"]["code"])
        assert f"user:{victim}" == answer["payload"]["key"]

        await client.ws.send_json({"action": "resume", "id": "r2", "lastEventId": theirs[0]})
        answer = await _answer(client, "r2")
        # As an id never kept: whether another user's event exists is not told (protocol section 21).
        assert ("system.resync", True, 0) == (
            answer["type"],
            answer["payload"]["events"],
            answer["payload"]["replaying"],
        )
        mine = await pub.publish("notification.new", payload=payload("notification.new"), user_ids=[intruder])
        await wait_for(lambda: len(client.events()) == 1)
        assert [mine] == [e["id"] for e in client.events()]


async def _kept(history: Any, key: str, count: int) -> bool:
    return await history.count_documents({"key": key}) >= count


async def test_the_reference_client_survives_dropped_connections_with_every_event_once_in_order(
    catchup_stack: Stack, mongo: AsyncMongoClient[dict[str, Any]]
) -> None:
    """With the emulator dropping the connection on 20% of posts, the reference client reconnects,
    resumes, and its subscriber ends with every event of the stream exactly once, in seq order."""
    s = catchup_stack.settings
    user = f"rf-{secrets.token_hex(4)}"
    key = f"user:{user}"
    sequences = SequenceAllocator(mongo, s.mongo_db, s.sequences_collection)
    resyncs: list[Resync] = []
    url = token_url(catchup_stack.ws_url, lambda: sign(user, s.jwt_key()))
    client = FanoutClient(url, backoff=Backoff(0.05, 0.5), hold_s=0.5, on_resync=resyncs.append)
    async with client, AsyncPublisher(s, sequences=sequences) as pub:
        client.set_position(key, 0)  # a new stream: everything from seq 1 is expected
        sub = await client.subscribe(types=["notification"])
        await asyncio.wait_for(client.connected.wait(), 10)
        faults(catchup_stack, drop=0.2)
        try:
            ids = [
                await pub.publish(
                    "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key
                )
                for _ in range(40)
            ]
            got = []
            async with asyncio.timeout(30):
                while len(got) < len(ids):
                    got.append(await sub.get())
        finally:
            faults(catchup_stack, **NO_FAULTS)
        await asyncio.sleep(0.5)  # anything still on its way would be a duplicate
        assert 0 == sub.pending()
    assert ids == [e["id"] for e in got]
    assert list(range(1, 41)) == [e["seq"] for e in got]
    assert client.connects > 1
    assert [] == resyncs
