"""Hostile input on the real local stack: bodies and worker-owned attributes that break naive parsers,
forged connection lists, malformed connection records, a record naming a dead endpoint, and
subscriptions beyond a client's rights. Every one ends in a reasoned outcome on its first receive."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout import attributes
from fanout.publish import build_event
from tests.catalog_examples import payload
from tests.conftest import Stack, stack_env, start_stack, stop_stack_later
from tests.corpus import CLIENT_FRAMES, Attrs, event_body, hostile_messages
from tests.helpers import ReadyWatch, Scrape, connect, drain_queue, scrape, sqs_client, wait_for

#: One process for the module (``make test`` runs one per core), so its stack starts once per run.
pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("hostile_input")]


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """A stack of its own: the tests below count every event its worker consumes. Its probe runs every
    0.5 s, so the pool's readiness follows a dead endpoint's failures within a second; a message that
    keeps failing is dead-lettered on its third receive (after one 2 s release), not its fifth (14 s)."""
    env = stack_env(FANOUT_PROBE_S="0.5", FANOUT_MAX_RECEIVES="3")
    stack = start_stack(tmp_path_factory.mktemp("hostile"), env)
    yield stack
    stop_stack_later(stack)


def _send(stack: Stack, messages: list[tuple[str, Attrs]]) -> None:
    """Send ``messages`` in order, in batches of up to 10 that SQS takes whole (1 MiB in all): one
    request each took about 30 ms on the 2-core machine, three seconds for the hostile corpus."""
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    batches: list[list[tuple[str, Attrs]]] = [[]]
    room = attributes.MAX_MESSAGE_BYTES
    for body, attrs in messages:
        # at least what SQS counts: the repr of an attribute holds its type and value, and more
        size = len(body.encode()) + sum(len(k) + len(str(v).encode()) for k, v in attrs.items())
        if batches[-1] and (len(batches[-1]) == 10 or size > room):
            batches.append([])
            room = attributes.MAX_MESSAGE_BYTES
        batches[-1].append((body, attrs))
        room -= size
    for batch in batches:
        entries = [{"Id": str(i), "MessageBody": body, "MessageAttributes": attrs}
                   for i, (body, attrs) in enumerate(batch)]  # fmt: skip
        reply = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not reply.get("Failed"), reply["Failed"]
    sqs.close()


def _depth(stack: Stack, queue_name: str) -> int:
    """Messages in a queue: visible, in flight or delayed."""
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    sqs.close()
    return sum(int(attrs[name]) for name in names)


def _fanout(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args], env={**os.environ, **stack.env}, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_hostile_messages_are_dead_lettered_on_first_receive_and_valid_ones_delivered(
    hostile_stack: Stack,
) -> None:
    """Over 60 kinds of hostile body and attribute each reach the DLQ with their reason on the first
    receive; valid events among them arrive; /readyz stays ready; dlq inspect and redrive handle them all."""
    stack = hostile_stack
    user, secret = f"hostile-{secrets.token_hex(4)}", secrets.token_hex(12)
    hostile = hostile_messages(user, secret)
    assert len({kind for kind, *_ in hostile}) >= 60
    valid_bodies = [event_body(user, secret) for _ in hostile]
    expired = event_body(user, secret, meta={"expiresAt": "0001-01-01T00:00:00"})  # no offset: UTC, long past
    messages = [
        m
        for (_, raw, attrs, _), ok in zip(hostile, valid_bodies, strict=True)
        for m in ((raw, attrs), (ok, {}))
    ]
    messages.append((expired, {}))
    reasons = Counter(reason for *_, reason in hostile)
    attribute_ids = {json.loads(raw)["id"] for kind, raw, _, _ in hostile if kind.startswith("attribute:")}
    valid_ids = {json.loads(raw)["id"] for raw in valid_bodies}
    before = await scrape(stack.metrics_url)
    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        ReadyWatch(stack.metrics_url) as ready,
    ):
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0)
        await asyncio.to_thread(_send, stack, messages)
        await wait_for(lambda: valid_ids <= set(client.event_ids()), timeout=60)

        async def settled() -> bool:  # every outcome counted, every dead letter written
            now = await scrape(stack.metrics_url)
            outcomes, letters = (
                now.value(n) - before.value(n) for n in ("fanout_events_total", "fanout_dead_lettered_total")
            )
            return outcomes >= len(messages) and letters >= len(hostile)

        async def queue_empty() -> bool:  # deletes are batched
            return 0 == await asyncio.to_thread(_depth, stack, stack.settings.queue_name)

        await wait_for(settled, timeout=30, every=0.2)
        await wait_for(queue_empty, timeout=10, every=0.2)
        after = await scrape(stack.metrics_url)
        assert len(hostile) == await asyncio.to_thread(_depth, stack, stack.settings.dlq_name)
        assert not attribute_ids & set(client.event_ids()), "a message with a forged attribute was delivered"

        # Each message was received once: the worker counts one outcome per receive it handles, so as
        # many outcomes as messages, none of them a release, means no message came back for a second try.
        def delta(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        assert len(messages) == delta("fanout_events_total")
        assert (len(hostile), len(valid_bodies), 1, 0) == (
            delta("fanout_events_total", outcome="invalid"),
            delta("fanout_events_total", outcome="delivered"),
            delta("fanout_events_total", outcome="expired"),
            delta("fanout_events_total", outcome="released"),
        )
        assert reasons == Counter({r: int(delta("fanout_dead_lettered_total", reason=r)) for r in reasons})

        shown = await asyncio.to_thread(_fanout, stack, "dlq", "inspect", "--max", "500")
        assert 0 == shown.returncode, shown.stderr
        lines = [json.loads(line) for line in shown.stdout.splitlines()]
        assert reasons == Counter(line["reason"] for line in lines)
        assert all(line["detail"] for line in lines)
        assert secret not in shown.stdout + shown.stderr

        moved = await asyncio.to_thread(_fanout, stack, "dlq", "redrive", "--max", "500")
        assert 0 == moved.returncode, moved.stderr
        assert f"{len(hostile)} moved" in moved.stderr
        # Redriven without the forged attributes, the attribute cases are valid events now; the rest
        # comes back to the DLQ with the same reasons.
        await wait_for(lambda: attribute_ids <= set(client.event_ids()), timeout=30)
        back = len(hostile) - len(attribute_ids)
        await wait_for(lambda: back == _depth(stack, stack.settings.dlq_name), timeout=30, every=0.2)
        dead = await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0)
    assert reasons - Counter({"bad_attribute": len(attribute_ids)}) == Counter(
        m["MessageAttributes"][attributes.REASON]["StringValue"] for m in dead
    )
    assert {200} == ready.statuses()
    assert len(ready.seen) > 10
    assert Counter(client.event_ids()).most_common(1)[0][1] == 1, "an event arrived twice"


async def _records(stack: Stack) -> tuple[AsyncMongoClient[dict[str, Any]], Any]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    return mongo, mongo[stack.settings.mongo_db][stack.settings.connections_collection]


async def _one_event_beside(
    stack: Stack, user: str, records: list[dict[str, Any]]
) -> tuple[Scrape, Scrape, list[dict[str, Any]]]:
    """One notification to ``user``, who has a live client beside ``records``: the metrics before and
    once it settled, and what is left of ``records``."""
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await col.insert_many(records)
        before = await scrape(stack.metrics_url)
        event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[user])
        await asyncio.to_thread(_send, stack, [(event.to_json(), {})])
        await wait_for(lambda: event.id in client.event_ids(), timeout=10)
        await wait_for(lambda: _settled(stack, before.value("fanout_events_total"), 1), timeout=10, every=0.1)
        after = await scrape(stack.metrics_url)
        ids = [r["connectionId"] for r in records]
        left = await col.find({"connectionId": {"$in": ids}}).to_list()
        await col.delete_many({"userId": user})
    return before, after, left


async def _connection_ids(col: Any, user: str) -> list[str]:
    return [doc["connectionId"] async for doc in col.find({"userId": user})]


async def _outcomes(stack: Stack) -> float:
    return (await scrape(stack.metrics_url)).value("fanout_events_total")


async def test_a_forged_connection_list_cannot_reach_another_user(hostile_stack: Stack) -> None:
    """A valid fanout-connections list naming another user's connections only narrows the body's own
    target: the other user never gets the event, the target's listed connections do."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        target = await connect(es, http, stack.ws_url, stack.settings, f"target-{run}")
        other = await connect(es, http, stack.ws_url, stack.settings, f"other-{run}")
        await other.ws.send_json({"action": "subscribe", "topics": [f"event:{run}"]})
        await wait_for(lambda: any(f.get("type") == "subscribe.ok" for f in other.frames))
        [mine] = await _connection_ids(col, target.user_id)
        [theirs] = await _connection_ids(col, other.user_id)
        to_topic = json.loads(event_body(target.user_id, "s"))
        to_topic["target"] = {"topics": [f"event:{run}-none"]}  # a topic no one follows
        forged = [
            (event_body(target.user_id, "s"), [theirs]),  # only the other user's connection
            (event_body(target.user_id, "s"), [mine, theirs]),  # both: the target's own is kept
            (json.dumps(to_topic), [theirs]),
        ]
        before = await _outcomes(stack)
        await asyncio.to_thread(
            _send,
            stack,
            [(body, {attributes.CONNECTIONS: attributes.string(json.dumps(ids))}) for body, ids in forged],
        )
        await wait_for(lambda: json.loads(forged[1][0])["id"] in target.event_ids(), timeout=15)
        await wait_for(lambda: _settled(stack, before, len(forged)), timeout=15, every=0.1)
        await asyncio.sleep(0.5)
    assert [] == other.events()
    assert [json.loads(forged[1][0])["id"]] == target.event_ids()


async def _settled(stack: Stack, before: float, count: int) -> bool:
    return await _outcomes(stack) - before >= count


async def test_malformed_connection_records_beside_good_ones_do_not_stop_delivery(
    hostile_stack: Stack,
) -> None:
    """Records with missing fields or wrong types, for the same users and for users sharing a lookup,
    are skipped and counted; every good connection gets its events within seconds."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    users = [f"rec-{run}-{i}" for i in range(3)]
    now = datetime.now(UTC)
    live = {"domainName": f"127.0.0.1:{stack.settings.gateway_port}", "stage": "local", "connectedAt": now,
            "lastSeenAt": now, "expiresAt": now + timedelta(hours=1)}  # fmt: skip
    a, b, c = users
    bad = [
        {**live, "connectionId": f"bad1{run}", "userId": a, "connectedAt": now.isoformat()},  # a string
        {**live, "connectionId": f"bad2{run}", "userId": [a, b]},  # a list, which $in matches for both
        {**live, "connectionId": f"bad3{run}", "userId": a, "domainName": 8080},
        {**live, "connectionId": f"bad4{run}", "userId": b, "stage": None},
        {**{k: v for k, v in live.items() if k != "stage"}, "connectionId": f"bad5{run}", "userId": b},
        {**live, "connectionId": 12345, "userId": c},
        {**live, "connectionId": f"bad6{run}", "userId": c, "connectedAt": [now]},
        {**live, "connectionId": f"bad7{run}", "userId": 42},
        {**live, "connectionId": f"bad8{run}", "userId": {"$in": [c]}},
    ]
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        clients = [await connect(es, http, stack.ws_url, stack.settings, u) for u in (a, a, b, c)]
        await col.insert_many(bad)
        skipped = (await scrape(stack.metrics_url)).value("fanout_records_skipped_total")
        events = [
            build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[u]) for u in users
        ]
        events.append(build_event("chat.message", user_ids=users, payload=payload("chat.message")))
        started = time.monotonic()
        await asyncio.to_thread(
            _send, stack, [(e.to_json(), {}) for e in events]
        )  # one receive, merged lookups
        for client in clients:
            wanted = {e.id for e in events if client.user_id in e.target.user_ids}
            await wait_for(lambda c=client, w=wanted: w <= set(c.event_ids()), timeout=10)
        took = time.monotonic() - started
        await col.delete_many({"connectionId": {"$in": [d["connectionId"] for d in bad]}})
    after = (await scrape(stack.metrics_url)).value("fanout_records_skipped_total")
    assert after - skipped >= 7  # every malformed record a lookup matched (userId 42 matches none)
    assert took < 10
    assert all(2 == len(client.events()) for client in clients)
    assert 0 == await asyncio.to_thread(_depth, stack, stack.settings.dlq_name)


async def test_subscriptions_beyond_a_clients_rights_are_refused_on_a_real_socket(
    hostile_stack: Stack,
) -> None:
    """Another user's topic is refused with system.error naming it; the total cap of 100 holds over many
    frames; an event to the other user's topic never reaches this client."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        es.push_async_callback(mongo.close)
        me = await connect(es, http, stack.ws_url, stack.settings, f"me-{run}")
        victim = await connect(es, http, stack.ws_url, stack.settings, f"victim-{run}")
        await me.ws.send_json(
            {"action": "subscribe", "id": "f1", "topics": [f"event:{run}", f"user:{victim.user_id}"]}
        )
        await wait_for(lambda: any(f.get("replyTo") == "f1" for f in me.frames))
        [refusal] = [f for f in me.frames if f.get("replyTo") == "f1"]
        assert ("system.error", "forbidden_topic", f"user:{victim.user_id}") == (
            refusal["type"],
            refusal["payload"]["code"],
            refusal["payload"]["topic"],
        )
        [doc] = [d async for d in col.find({"userId": me.user_id})]
        assert not doc.get("topics"), "a refused frame stored topics"
        for i in range(12):  # 120 topics in frames of 10, sent at once: only 100 fit
            topics = [f"event:{run}-{i}-{j}" for j in range(10)]
            await me.ws.send_json({"action": "subscribe", "id": f"s{i}", "topics": topics})
        await wait_for(lambda: 12 <= sum(1 for f in me.frames if str(f.get("replyTo", "")).startswith("s")))
        answers = Counter(
            f["payload"].get("code", f["type"])
            for f in me.frames
            if str(f.get("replyTo", "")).startswith("s")
        )
        assert {"subscribe.ok": 10, "too_many_topics": 2} == answers
        [doc] = [d async for d in col.find({"userId": me.user_id})]
        assert 100 == len(doc["topics"])
        before = await _outcomes(stack)
        leak = build_event(
            "notification.new", payload={"notificationId": "n1"}, topics=[f"user:{victim.user_id}"]
        )
        mine = build_event("notification.new", payload={"notificationId": "n1"}, topics=[f"event:{run}-0-0"])
        await asyncio.to_thread(_send, stack, [(leak.to_json(), {}), (mine.to_json(), {})])
        await wait_for(lambda: mine.id in me.event_ids(), timeout=15)
        await wait_for(lambda: _settled(stack, before, 2), timeout=15, every=0.1)
    assert [mine.id] == me.event_ids()


async def test_every_unusable_client_frame_is_answered_with_system_error(hostile_stack: Stack) -> None:
    """Frames that break a naive parser or name nothing usable each get system.error with a code, never
    the gateway's internal error, and the socket stays usable."""
    stack = hostile_stack
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, f"frames-{secrets.token_hex(4)}")
        codes = []
        for frame, _ in CLIENT_FRAMES:
            seen = len(client.frames)
            await client.ws.send_str(frame)
            await wait_for(lambda n=seen: len(client.frames) > n, timeout=10)
            answer = client.frames[-1]
            codes.append((answer.get("type"), answer.get("payload", {}).get("code")))
        await client.ws.send_json({"action": "ping", "id": "after"})
        await wait_for(lambda: any(f.get("replyTo") == "after" for f in client.frames), timeout=10)
    assert [("system.error", code) for _, code in CLIENT_FRAMES] == codes


async def test_a_record_naming_a_dead_endpoint_does_not_make_the_gateway_not_ready(
    hostile_stack: Stack, closed_port: int
) -> None:
    """Posts for one user's records fail at a closed port while another user's succeed on the emulator:
    /readyz stays ready, and the healthy user gets every event."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    dead_user = f"dead-{run}"
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)  # past the connect grace: no young-connection handling
    records = [{"connectionId": f"dead{i}{run}", "userId": dead_user, "domainName": f"127.0.0.1:{closed_port}",
                "stage": "local", "connectedAt": old, "lastSeenAt": old, "expiresAt": now + timedelta(hours=1)}
               for i in range(2)]  # fmt: skip
    mongo, col = await _records(stack)
    await col.insert_many(records)
    before = await scrape(stack.metrics_url)
    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        ReadyWatch(stack.metrics_url, 0.05) as ready,
    ):
        es.push_async_callback(mongo.close)
        healthy = await connect(es, http, stack.ws_url, stack.settings, f"healthy-{run}")
        first = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[healthy.user_id])
        await asyncio.to_thread(_send, stack, [(first.to_json(), {})])
        await wait_for(lambda: first.id in healthy.event_ids(), timeout=15)
        ids = {first.id}
        soon = (datetime.now(UTC) + timedelta(seconds=6)).isoformat()  # bounds the dead user's outage rounds
        for _ in range(5):
            dead = build_event(
                "notification.new",
                payload={"notificationId": "n1"},
                user_ids=[dead_user],
                meta={"expiresAt": soon},
            )
            good = build_event(
                "notification.new", payload={"notificationId": "n1"}, user_ids=[healthy.user_id]
            )
            ids.add(good.id)
            await asyncio.to_thread(_send, stack, [(dead.to_json(), {}), (good.to_json(), {})])
            await asyncio.sleep(0.4)
        await wait_for(lambda: ids <= set(healthy.event_ids()), timeout=15)

        async def dead_posts_failed() -> bool:
            now = await scrape(stack.metrics_url)
            unreachable = now.value("fanout_deliveries_total", outcome="unreachable")
            return unreachable - before.value("fanout_deliveries_total", outcome="unreachable") >= 10

        await wait_for(dead_posts_failed, timeout=15, every=0.2)
        await asyncio.sleep(1.0)  # two probe rounds: the pool's gauge would show it too
        await col.delete_many({"userId": dead_user})
    assert {200} == ready.statuses()


async def test_a_record_declaring_payload_versions_no_int_can_read_does_not_fail_its_users_events(
    hostile_stack: Stack,
) -> None:
    """A record whose ``payloads`` holds a version that passes ``str.isdigit`` but is no decimal number
    (a superscript two, 5,000 digits) has those entries ignored: the user's events reach its other
    connections on the first receive instead of failing the fan-out on every receive."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    user = f"versions-{run}"
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)  # past the connect grace: the emulator's 410 prunes it
    records = [
        {"connectionId": f"ver{i}{run}", "userId": user, "domainName": f"127.0.0.1:{stack.settings.gateway_port}",
         "stage": "local", "connectedAt": old, "lastSeenAt": old, "expiresAt": now + timedelta(hours=1),
         "payloads": [entry]}
        for i, entry in enumerate(("notification.new@\u00b2", "notification.new@" + "9" * 5000))
    ]  # fmt: skip
    before, after, _ = await _one_event_beside(stack, user, records)
    assert 0 == after.value("fanout_events_total", outcome="released") - before.value(
        "fanout_events_total", outcome="released"
    )


async def test_a_remainder_sqs_refuses_ends_in_the_dlq_with_a_reason(
    hostile_stack: Stack, closed_port: int
) -> None:
    """An event whose remainder cannot be written (its body re-serialized grows past SQS's limit: every
    ``1e15`` of ``meta`` becomes ``1000000000000000.0``) is released with a backoff like any failed
    fan-out and dead-lettered as ``handler_error`` on its last receive, instead of waiting out its
    visibility timeout on every receive and reaching the DLQ through SQS's redrive with no reason."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    user = f"grows-{run}"
    now = datetime.now(UTC)
    old = now - timedelta(minutes=5)
    dead = {"connectionId": f"grows{run}", "userId": user, "domainName": f"127.0.0.1:{closed_port}",
            "stage": "local", "connectedAt": old, "lastSeenAt": old, "expiresAt": now + timedelta(hours=1)}  # fmt: skip
    body = json.loads(event_body(user, "s"))
    body["meta"] = {"pad": [1e15] * 70_000}
    raw = json.dumps(body, separators=(",", ":")).replace("1000000000000000.0", "1e15")
    assert len(raw) < attributes.MAX_MESSAGE_BYTES / 2
    mongo, col = await _records(stack)
    async with AsyncExitStack() as es:
        es.push_async_callback(mongo.close)
        await col.insert_one(dead)
        await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0)
        await asyncio.to_thread(_send, stack, [(raw, {})])
        await wait_for(lambda: 1 == _depth(stack, stack.settings.dlq_name), timeout=45, every=0.5)
        [letter] = await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0)
        await col.delete_many({"userId": user})
    assert "handler_error" == letter["MessageAttributes"][attributes.REASON]["StringValue"]
    assert raw == letter["Body"]


async def test_a_gone_record_dated_in_the_future_is_pruned_not_retried_for_rounds(
    hostile_stack: Stack,
) -> None:
    """A record whose ``connectedAt`` lies an hour ahead (an API that wrote its local time as UTC) is not
    in API Gateway's connect race: its 410 prunes it on the first receive, where the grace period would
    have sent every event of its user through every remainder round to the DLQ."""
    stack = hostile_stack
    run = secrets.token_hex(4)
    user = f"ahead-{run}"
    now = datetime.now(UTC)
    ahead = {"connectionId": f"ahead{run}", "userId": user, "domainName": f"127.0.0.1:{stack.settings.gateway_port}",
             "stage": "local", "connectedAt": now + timedelta(hours=1), "lastSeenAt": now,
             "expiresAt": now + timedelta(hours=2)}  # fmt: skip
    before, after, left = await _one_event_beside(stack, user, [ahead])
    assert [] == left
    assert 0 == after.value("fanout_remainders_total") - before.value("fanout_remainders_total")
