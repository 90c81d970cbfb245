"""Timing edges on the real stack: a fan-out that outlives the visibility timeout (waiting for a slot,
and through a shutdown drain) is delivered once; a young connection's 410 ends in delivery on a later
round; an event that expires while queued behind a long fan-out is not posted."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout.local.emulator import CHOSEN_ID
from fanout.publish import build_event
from fanout.tokens import sign
from tests.catalog_examples import payload
from tests.conftest import Stack, free_port
from tests.helpers import Client, connect, scrape, settled, sqs_client, wait_for
from tests.integration.conftest import Lane, faults, stats

pytestmark = pytest.mark.timeout(90)

#: A worker that holds messages longer than their visibility: 2 s visibility, one event at a time.
SLOW = {"FANOUT_VISIBILITY_TIMEOUT_S": "2", "FANOUT_MAX_EVENTS_IN_FLIGHT": "1"}
LATENCY_MS = 2500  # each post, so each event, outlasts the visibility timeout


def _publish(stack: Stack, bodies: list[str]) -> None:
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.close()


async def _clients(es: AsyncExitStack, http: aiohttp.ClientSession, stack: Stack, n: int) -> list[Client]:
    run = secrets.token_hex(3)
    return list(
        await asyncio.gather(
            *(connect(es, http, stack.ws_url, stack.settings, f"t-{run}-{i}") for i in range(n))
        )
    )


async def test_events_held_past_the_visibility_timeout_waiting_for_a_slot_are_delivered_once(
    lane: Lane,
) -> None:
    """Visibility 2 s, one event in flight, every post 2.5 s: the events waiting for the slot and the one
    being posted stay invisible; each client gets each event once and no message is received twice."""
    stack = lane.stack
    worker = lane.worker(**SLOW)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        clients, _ = await asyncio.gather(_clients(es, http, stack, 3), worker.ready())
        faults(stack, latency_ms=LATENCY_MS)
        events = [
            build_event(
                "notification.new", payload={"notificationId": "n1"}, user_ids=[c.user_id for c in clients]
            )
            for _ in range(2)
        ]
        await asyncio.to_thread(_publish, stack, [e.to_json() for e in events])
        ids = {e.id for e in events}
        await wait_for(lambda: all(ids <= set(c.event_ids()) for c in clients), timeout=40, every=0.2)
        await asyncio.sleep(2.5)  # a message that lapsed would be received again by now
        consumed = (await scrape(stack.metrics_url)).value("fanout_events_total")
    assert all(Counter(c.event_ids()) == dict.fromkeys(ids, 1) for c in clients), "duplicate frames"
    assert len(events) == consumed, "a message was received again"
    assert 0 == worker.terminate()


async def test_sigterm_mid_fan_out_with_a_budget_longer_than_the_visibility_drains_once(
    lane: Lane,
) -> None:
    """SIGTERM while a 2.5 s fan-out runs (visibility 2 s, budget 8 s) and a second worker already polls,
    as in a rolling deploy: the fan-out finishes during the drain, still invisible to the second worker,
    the message waiting for a slot goes back at once, and every client gets each event exactly once."""
    stack = lane.stack
    first = lane.worker(**SLOW, FANOUT_SHUTDOWN_BUDGET_S="8")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        clients, _ = await asyncio.gather(_clients(es, http, stack, 3), first.ready())
        faults(stack, latency_ms=LATENCY_MS)
        events = [
            build_event(
                "notification.new", payload={"notificationId": "n1"}, user_ids=[c.user_id for c in clients]
            )
            for _ in range(2)
        ]
        await asyncio.to_thread(_publish, stack, [e.to_json() for e in events])
        ids = {e.id for e in events}

        async def fanning_out() -> bool:
            return 1 <= (await scrape(stack.metrics_url)).value("fanout_events_in_flight")

        await wait_for(fanning_out, timeout=15)
        await asyncio.sleep(0.5)  # its posts are under way
        assert not any(c.events() for c in clients), "SIGTERM should come mid-fan-out"
        signalled = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(first.terminate))
        second = lane.worker(**SLOW, FANOUT_METRICS_PORT=str(free_port()))
        assert 0 == await stopping
        drained_s = time.monotonic() - signalled
        faults(stack, latency_ms=0)
        await wait_for(lambda: all(ids <= set(c.event_ids()) for c in clients), timeout=40, every=0.2)
        await asyncio.sleep(2.5)  # time for a duplicate to show
    assert all(Counter(c.event_ids()) == dict.fromkeys(ids, 1) for c in clients), "duplicate frames"
    assert drained_s > 1.0, "the drain waited for the fan-out in flight"
    assert "worker_stopped" in first.log.read_text()
    assert 0 == second.terminate()


async def _records(stack: Stack) -> tuple[AsyncMongoClient[dict[str, Any]], Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    return mongo, mongo[stack.settings.mongo_db][stack.settings.connections_collection]


def _record(stack: Stack, connection_id: str, user: str, connected_at: datetime) -> dict[str, Any]:
    return {"connectionId": connection_id, "userId": user, "domainName": f"127.0.0.1:{stack.settings.gateway_port}",
            "stage": stack.settings.gateway_stage, "connectedAt": connected_at, "lastSeenAt": connected_at,
            "expiresAt": connected_at + timedelta(hours=1)}  # fmt: skip


async def test_a_young_connections_410_is_delivered_on_a_later_round(
    lane: Lane,
) -> None:
    """A record written just before its socket opens answers 410 at first: not pruned, the event goes to
    a remainder round, and reaches the socket once it is open."""
    stack = lane.stack
    worker = lane.worker(FANOUT_POST_ATTEMPTS="1")
    await worker.ready()
    user, connection_id = f"young-{secrets.token_hex(3)}", f"young{secrets.token_hex(6)}"
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        await col.insert_one(_record(stack, connection_id, user, datetime.now(UTC)))
        before = await scrape(stack.metrics_url)
        event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[user])
        await asyncio.to_thread(_publish, stack, [event.to_json()])

        async def remainder_written() -> bool:
            now = await scrape(stack.metrics_url)
            return now.value("fanout_remainders_total") > before.value("fanout_remainders_total")

        await wait_for(remainder_written, timeout=15, every=0.1)
        ws = await http.ws_connect(
            stack.ws_url, params={"token": sign(user, stack.settings.jwt_key()), CHOSEN_ID: connection_id}
        )
        client = Client(user, ws)
        es.push_async_callback(client.close)
        await wait_for(lambda: event.id in client.event_ids(), timeout=15)
        await settled(stack.settings, [client])  # nothing more to post, nor to count
        after = await scrape(stack.metrics_url)
    assert [event.id] == client.event_ids()
    assert 1 <= after.value("fanout_deliveries_total", outcome="gone") - before.value(
        "fanout_deliveries_total", outcome="gone"
    )
    assert after.value("fanout_connections_pruned_total") == before.value("fanout_connections_pruned_total")


async def test_an_event_that_expires_queued_behind_a_long_fan_out_is_not_posted(
    lane: Lane,
) -> None:
    """One post lane, 1 s per post, a four-connection fan-out under way: an event expiring 1 s after it
    is published waits behind it, is counted expired and never reaches its client."""
    stack = lane.stack
    worker = lane.worker(FANOUT_MAX_POSTS_IN_FLIGHT="1", FANOUT_POST_ATTEMPTS="1")
    await worker.ready()
    big = f"big-{secrets.token_hex(3)}"
    old = datetime.now(UTC) - timedelta(minutes=5)  # past the connect grace: 410 prunes at once
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        [client] = await _clients(es, http, stack, 1)
        await col.insert_many([_record(stack, f"{big}-{i}", big, old) for i in range(4)])
        faults(stack, latency_ms=1000)
        gone = stats(stack).get("gone", 0)
        before = await scrape(stack.metrics_url)
        await asyncio.to_thread(
            _publish,
            stack,
            [build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[big]).to_json()],
        )
        await wait_for(lambda: stats(stack).get("gone", 0) > gone, timeout=15)  # its first post answered
        soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        late = build_event(
            "chat.message",
            user_ids=[client.user_id],
            payload=payload("chat.message"),
            meta={"expiresAt": soon},
        )
        await asyncio.to_thread(_publish, stack, [late.to_json()])

        async def both_done() -> bool:
            now = await scrape(stack.metrics_url)
            return now.value("fanout_events_total") - before.value("fanout_events_total") >= 2

        await wait_for(both_done, timeout=30, every=0.2)
        after = await scrape(stack.metrics_url)
        faults(stack, latency_ms=0)
        check = build_event("chat.message", user_ids=[client.user_id], payload=payload("chat.message"))
        await asyncio.to_thread(_publish, stack, [check.to_json()])
        await wait_for(lambda: check.id in client.event_ids(), timeout=15)
    assert [check.id] == client.event_ids()
    assert 1 == after.value("fanout_events_total", outcome="expired") - before.value(
        "fanout_events_total", outcome="expired"
    )
    # expired in the lane, not at receive: the post itself was skipped
    assert 1 == after.value(
        "fanout_deliveries_total", event_type="chat.message", outcome="expired"
    ) - before.value("fanout_deliveries_total", event_type="chat.message", outcome="expired")
    assert 4 == stats(stack)["gone"] - gone
