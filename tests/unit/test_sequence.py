"""Per-key sequence numbers: allocated atomically in MongoDB, and set by the publishers on ordered events,
which a FIFO queue then groups by key (real MongoDB and SQS)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry
from pymongo import MongoClient

from fanout import AsyncPublisher, Publisher
from fanout.envelope import MAX_FRAME_BYTES, validate
from fanout.errors import InvalidMessage
from fanout.publish import AsyncBackgroundPublisher, BackgroundPublisher, build_event
from fanout.sequence import SequenceAllocator, SyncSequenceAllocator, latest
from fanout.store import mongo_client
from tests.catalog_examples import EXAMPLES, payload
from tests.conftest import Server, dev_settings


async def test_concurrent_allocations_of_a_key_are_1_to_n_without_repeat(mongo_server: Server) -> None:
    """Fifty concurrent allocations of one key get 1..50, each once; another key starts at 1."""
    db = f"seq_{secrets.token_hex(4)}"
    client = mongo_client(dev_settings(mongo=mongo_server))
    try:
        alloc = SequenceAllocator(client, db)
        got = await asyncio.gather(*(alloc.next("conversation:c9") for _ in range(50)))
        assert list(range(1, 51)) == sorted(got)
        assert 1 == await alloc.next("conversation:c8")
        assert {"conversation:c9": 50, "conversation:c8": 1} == await latest(
            client[db]["fanoutsequences"], ["conversation:c9", "conversation:c8", "user:none"]
        )
    finally:
        await client.drop_database(db)
        await client.close()


def _received(settings: Any, queue: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    sqs.close()
    return list(reply.get("Messages", []))


def test_the_sync_publisher_allocates_seq_and_groups_by_key_on_a_fifo_queue(
    mongo_server: Server, moto_server: Server
) -> None:
    """Publishing with ordering_key gives the key's next seq; on a .fifo queue the key is the
    MessageGroupId and the event id the deduplication id (an unkeyed event is a group of its own)."""
    suffix = secrets.token_hex(4)
    settings = dev_settings(
        moto_server, mongo_server, queue_name=f"q-{suffix}.fifo", dlq_name=f"d-{suffix}.fifo"
    )
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name, Attributes={"FifoQueue": "true"})
    sqs.close()
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo())
    publisher = Publisher(settings, sequences=SyncSequenceAllocator(mongo, settings.mongo_db))
    try:
        first = publisher.publish(
            "chat.message", payload=payload("chat.message"), user_ids=["u1"], ordering_key="conversation:c9"
        )
        second = publisher.publish(
            "chat.message", payload=payload("chat.message"), user_ids=["u1"], ordering_key="conversation:c9"
        )
        alone = publisher.publish("notification.new", payload=payload("notification.new"), user_ids=["u1"])
        messages = _received(settings, settings.queue_name)
    finally:
        publisher.close()
        mongo.drop_database(settings.mongo_db)
        mongo.close()
    seen = {json.loads(m["Body"])["id"]: m for m in messages}
    assert (1, 2) == tuple(json.loads(seen[i]["Body"])["meta"]["seq"] for i in (first, second))
    assert ["conversation:c9", "conversation:c9", alone] == [
        seen[i]["Attributes"]["MessageGroupId"] for i in (first, second, alone)
    ]
    assert first == seen[first]["Attributes"]["MessageDeduplicationId"]


async def test_an_event_refused_for_its_input_takes_no_seq(mongo_server: Server, moto_server: Server) -> None:
    """publish() with an ordering key refuses bad input before it allocates: no target, or a key SQS
    could not take as a group, leaves the counters as they were, so the next event of the key gets the
    next seq (before, each refusal used one up: a gap clients resync, or a counter for a key that is none)."""
    settings = dev_settings(moto_server, mongo_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name)
    sqs.close()
    client = mongo_client(settings)
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo())
    sync = Publisher(settings, sequences=SyncSequenceAllocator(mongo, settings.mongo_db))
    event = {"payload": payload("chat.message"), "ordering_key": "user:u1"}
    try:
        async with AsyncPublisher(settings, sequences=SequenceAllocator(client, settings.mongo_db)) as pub:
            for bad in ({"user_ids": []}, {"user_ids": ["u1"], "ordering_key": "user u1"}):
                with pytest.raises(InvalidMessage):
                    sync.publish("chat.message", **(event | bad))
                with pytest.raises(InvalidMessage):
                    await pub.publish("chat.message", **(event | bad))
            first = sync.publish("chat.message", user_ids=["u1"], **event)
            second = await pub.publish("chat.message", user_ids=["u1"], **event)
        counters = await latest(client[settings.mongo_db]["fanoutsequences"], ["user:u1", "user u1"])
        messages = _received(settings, settings.queue_name)
    finally:
        sync.close()
        mongo.close()
        await client.drop_database(settings.mongo_db)
        await client.close()
    seqs = {json.loads(m["Body"])["id"]: json.loads(m["Body"])["meta"]["seq"] for m in messages}
    assert {first: 1, second: 2} == seqs
    assert {"user:u1": 2} == counters


async def test_the_async_publisher_allocates_seq_and_a_standard_queue_gets_no_group(
    mongo_server: Server, moto_server: Server
) -> None:
    """The asynchronous publisher allocates seq the same way; a standard queue's sends carry no group."""
    settings = dev_settings(moto_server, mongo_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name)
    sqs.close()
    client = mongo_client(settings)
    try:
        alloc = SequenceAllocator(client, settings.mongo_db)
        async with AsyncPublisher(settings, sequences=alloc) as pub:
            ids = [
                await pub.publish(
                    "chat.message", payload=payload("chat.message"), user_ids=["u1"], ordering_key="user:u1"
                )
                for _ in range(3)
            ]
            explicit = await pub.publish(
                "chat.message",
                payload=payload("chat.message"),
                user_ids=["u1"],
                ordering_key="user:u1",
                seq=99,
            )
            typed = await pub.send_event(EXAMPLES["chat.message"], user_ids=["u1"])
        messages = _received(settings, settings.queue_name)
    finally:
        await client.drop_database(settings.mongo_db)
        await client.close()
    metas = {json.loads(m["Body"])["id"]: json.loads(m["Body"])["meta"] for m in messages}
    assert [1, 2, 3, 99] == [metas[i]["seq"] for i in (*ids, explicit)]
    assert ("chat:c9", 1) == (metas[typed]["orderingKey"], metas[typed]["seq"])  # the catalog's key
    assert all("MessageGroupId" not in m.get("Attributes", {}) for m in messages)


async def test_the_background_publishers_name_the_key_group_on_a_fifo_queue(moto_server: Server) -> None:
    """Both background publishers send to a FIFO queue with the ordering key as MessageGroupId (the event
    id for an unkeyed event) and the event id as deduplication id, as the direct publishers do."""
    suffix = secrets.token_hex(4)
    settings = dev_settings(moto_server, queue_name=f"q-{suffix}.fifo", dlq_name=f"d-{suffix}.fifo")
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name, Attributes={"FifoQueue": "true"})
    sqs.close()
    chat = payload("chat.message")
    sync = BackgroundPublisher(settings, registry=CollectorRegistry(), sigterm=False)
    try:
        keyed = sync.publish("chat.message", payload=chat, user_ids=["u1"], ordering_key="conversation:c9")
        alone = sync.publish("notification.new", payload=payload("notification.new"), user_ids=["u1"])
    finally:
        assert 0 == sync.close()
    async with AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), sigterm=False) as pub:
        later = await pub.publish(
            "chat.message", payload=chat, user_ids=["u1"], ordering_key="conversation:c9"
        )
    seen = {json.loads(m["Body"])["id"]: m["Attributes"] for m in _received(settings, settings.queue_name)}
    assert ["conversation:c9", alone, "conversation:c9"] == [
        seen[i]["MessageGroupId"] for i in (keyed, alone, later)
    ]
    assert [keyed, alone, later] == [seen[i]["MessageDeduplicationId"] for i in (keyed, alone, later)]


def test_a_frame_without_room_for_its_seq_is_refused_before_one_is_taken(
    mongo_server: Server, moto_server: Server
) -> None:
    """An event whose client frame fits in 128 KiB only without its seq is refused too_large before its
    key's counter moves (before, it took a seq and the worker dead-lettered it too_large); one with room
    for the seq goes, with the next seq in its body."""
    settings = dev_settings(moto_server, mongo_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name)
    sqs.close()
    mongo: MongoClient[dict[str, Any]] = MongoClient(settings.mongo())
    sync = Publisher(settings, sequences=SyncSequenceAllocator(mongo, settings.mongo_db))
    event: dict[str, Any] = {"user_ids": ["u1"], "ordering_key": "user:u1"}
    bare = len(build_event("chat.sticker.sent", payload={"pad": ""}, **event).client_frame)
    try:
        with pytest.raises(InvalidMessage, match="too_large"):
            sync.publish("chat.sticker.sent", payload={"pad": "x" * (MAX_FRAME_BYTES - bare - 10)}, **event)
        assert mongo[settings.mongo_db]["fanoutsequences"].count_documents({}) == 0
        sent = sync.publish(
            "chat.sticker.sent", payload={"pad": "x" * (MAX_FRAME_BYTES - bare - 30)}, **event
        )
        [message] = _received(settings, settings.queue_name)
    finally:
        sync.close()
        mongo.drop_database(settings.mongo_db)
        mongo.close()
    body = json.loads(message["Body"])
    assert (sent, 1) == (body["id"], body["meta"]["seq"])
    assert MAX_FRAME_BYTES >= len(validate(body).client_frame)
