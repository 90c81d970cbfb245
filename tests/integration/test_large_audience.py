"""Large audiences keep every recipient, once: a dead letter for thousands of refused connections keeps
every id, a body close to SQS's 1 MiB with thousands of failures is re-enqueued, every message the worker
writes under the limit counting its attributes, and a user list sliced into parts posts no connection
twice."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from fanout import attributes
from fanout.envelope import MAX_BODY_BYTES, parse_body
from fanout.publish import build_event
from tests.conftest import Stack
from tests.helpers import connect, scrape, settled, sqs_client, wait_for
from tests.integration.conftest import Lane

pytestmark = pytest.mark.timeout(120)

CONNECTIONS = 2_500
#: SecantusDB (Python) takes seconds to return thousands of records on a busy 2-core machine; MongoDB does not.
WORKER = {
    "FANOUT_POST_ATTEMPTS": "1",
    "FANOUT_MONGO_TIMEOUT_MS": "30000",
    "FANOUT_SHARD_SIZE": "100000",
}  # one message, whole
FAILING = 3_000
ID_CHARS = 128  # the longest id the worker accepts back: the fewest ids per message


def _id(run: str, i: int) -> str:
    return f"{run}-{i:05d}-".ljust(ID_CHARS, "x")


def _records(run: str, users: list[str], domain: str, stage: str) -> list[dict[str, Any]]:
    old = datetime.now(UTC) - timedelta(minutes=5)
    return [{"connectionId": _id(run, i), "userId": user, "domainName": domain, "stage": stage, "connectedAt": old,
             "lastSeenAt": old, "expiresAt": old + timedelta(hours=2)} for i, user in enumerate(users)]  # fmt: skip


async def _insert(stack: Stack, docs: list[dict[str, Any]]) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    try:
        await mongo[stack.settings.mongo_db][stack.settings.connections_collection].insert_many(docs)
    finally:
        await mongo.close()


def _receive_all(stack: Stack, queue_name: str, wanted: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    """Receive and delete messages until ``wanted`` connection ids were seen, or ``timeout_s`` passed."""
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    out: list[dict[str, Any]] = []
    seen = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"])  # fmt: skip
        for message in reply.get("Messages", []):
            out.append(message)
            seen += len(_connections(message))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if seen >= wanted:
            break
    sqs.close()
    return out


def _connections(message: dict[str, Any]) -> list[str]:
    attr = message.get("MessageAttributes", {}).get(attributes.CONNECTIONS)
    return list(json.loads(attr["StringValue"])) if attr else []


def _size(message: dict[str, Any]) -> int:
    attrs = {k: {"DataType": v["DataType"], "StringValue": v["StringValue"]}
             for k, v in message.get("MessageAttributes", {}).items()}  # fmt: skip
    return attributes.size(message["Body"], attrs)


def _publish(stack: Stack, body: str) -> None:
    sqs = sqs_client(stack.settings)
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"], MessageBody=body
    )
    sqs.close()


async def test_a_dead_letter_for_thousands_of_refused_connections_keeps_every_id(lane: Lane) -> None:
    """2,500 records of one user on a stage the emulator refuses (403), behind a 750 KB body: every id is
    in the `forbidden` dead letters, over as many messages as it takes, each under 1 MiB with attributes."""
    stack = lane.stack
    worker = lane.worker(**WORKER)
    run = secrets.token_hex(3)
    user = f"many-{run}"
    await _insert(
        stack, _records(run, [user] * CONNECTIONS, f"127.0.0.1:{stack.settings.gateway_port}", "wrong")
    )
    # A big body leaves the ids about 300 KB beside it, 28 KB less than they take: they go over two
    # messages. Under 256 KB of room the worker would narrow the body to the failing user instead (39 KB
    # away). The body grows rather than the records: SecantusDB (Python) took 3 to 4 s to write 5,000
    # records and 1 to 2 s to read them back.
    padding = [f"nobody-{run}-{i}".ljust(250, "p") for i in range(2_950)]  # user ids may be 256 long
    event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[user, *padding])
    await worker.ready()
    await asyncio.to_thread(_publish, stack, event.to_json())
    dead = await asyncio.to_thread(_receive_all, stack, stack.settings.dlq_name, CONNECTIONS)
    assert {_id(run, i) for i in range(CONNECTIONS)} == {c for m in dead for c in _connections(m)}
    assert sum(len(_connections(m)) for m in dead) == CONNECTIONS  # each id once
    assert len(dead) >= 2, "the ids should not fit beside this body in one message"
    assert {"forbidden"} == {m["MessageAttributes"][attributes.REASON]["StringValue"] for m in dead}
    assert all(_size(m) <= attributes.MAX_MESSAGE_BYTES for m in dead)
    assert {event.id} == {parse_body(m["Body"]).id for m in dead}


async def test_a_body_near_one_mebibyte_with_thousands_of_failures_is_re_enqueued(
    lane: Lane, closed_port: int
) -> None:
    """A 1 MiB-close body whose 3,000 connections all fail: the remainder (the body narrowed to their
    users, plus every id) is written in messages under 1 MiB with attributes, and nothing is released."""
    stack = lane.stack
    # every post below meets a closed port, an outage: the remainder is visible 1 s later, not 5
    worker = lane.worker(**WORKER, FANOUT_OUTAGE_DELAY_S="1")
    run = secrets.token_hex(3)
    users = [f"wide-{run}-{i:05d}".ljust(250, "w") for i in range(4_000)]  # user ids may be 256 long
    failing = users[:FAILING]
    await _insert(stack, _records(run, failing, f"127.0.0.1:{closed_port}", "local"))
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    event = build_event(
        "notification.new",
        user_ids=users,
        payload={"notificationId": "n1", "pad": "p" * 28_000},
        meta={"expiresAt": soon},
    )
    body = event.to_json()
    assert MAX_BODY_BYTES - 30_000 < len(body.encode()) <= MAX_BODY_BYTES
    await worker.ready()
    await asyncio.to_thread(_publish, stack, body)

    async def remainder_written() -> bool:
        return 1 <= (await scrape(stack.metrics_url)).value("fanout_remainders_total")

    await wait_for(remainder_written, timeout=60, every=0.2)
    figures = await scrape(stack.metrics_url)
    assert 0 == worker.terminate()  # the remainders wait in the queue (delayed) for this test to read
    assert (1, 0) == (
        figures.value("fanout_events_total", outcome="failed"),
        figures.value("fanout_events_total", outcome="released"),
    )
    rest = await asyncio.to_thread(_receive_all, stack, stack.settings.queue_name, FAILING)
    assert {_id(run, i) for i in range(FAILING)} == {c for m in rest for c in _connections(m)}
    assert len(rest) >= 2, "the narrowed body and 3,000 ids are over 1 MiB together"
    assert all(_size(m) <= attributes.MAX_MESSAGE_BYTES for m in rest)
    assert all(set(parse_body(m["Body"]).target.user_ids) == set(failing) for m in rest)


async def _connection_ids(stack: Stack, users: list[str]) -> list[str]:
    """The connection ids of ``users``' records (one client each), in their order."""
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.settings.mongo(), tz_aware=True)
    try:
        col = mongo[stack.settings.mongo_db][stack.settings.connections_collection]
        docs = await col.find(
            {"userId": {"$in": users}}, {"_id": 0, "userId": 1, "connectionId": 1}
        ).to_list()
    finally:
        await mongo.close()
    by_user = {d["userId"]: d["connectionId"] for d in docs}
    return [by_user[u] for u in users]


async def test_a_user_list_with_single_connections_reaches_each_connection_once(lane: Lane) -> None:
    """Eleven users (over a shard size of ten) plus target.connectionIds naming another user's tab and one
    of the eleven: every one of the twelve clients gets the event exactly once."""
    stack = lane.stack
    worker = lane.worker(FANOUT_SHARD_SIZE="10")
    run = secrets.token_hex(3)
    names = [f"slice-{run}-{i:02d}" for i in range(12)]
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        clients, _ = await asyncio.gather(
            asyncio.gather(*(connect(es, http, stack.ws_url, stack.settings, n) for n in names)),
            worker.ready(),
        )
        single = await _connection_ids(stack, [names[11], names[10]])  # the tab, and the last user's
        event = build_event(
            "notification.new", payload={"notificationId": "n1"}, user_ids=names[:11], connection_ids=single
        )
        await asyncio.to_thread(_publish, stack, event.to_json())
        await wait_for(lambda: all(c.events() for c in clients), timeout=30, every=0.1)
        await settled(stack.settings, clients)  # every part posted: a second post of one would be read
    counts = {c.user_id: dict(Counter(e["id"] for e in c.events())) for c in clients}
    assert {} == {user: got for user, got in counts.items() if got != {event.id: 1}}
