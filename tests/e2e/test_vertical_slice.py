"""The whole path: publisher -> SQS/SNS -> worker -> gateway emulator -> real WebSocket clients."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from fanout import Publisher
from tests.conftest import Stack
from tests.helpers import connect, open_store, sqs_client, wait_for


def _uid(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


@pytest.mark.parametrize("via", ["sqs", "sns"])
async def test_event_reaches_every_connection_of_its_user_only(stack: Stack, via: str) -> None:
    """Both clients of user A get exactly the client envelope, B gets nothing, a stale record is pruned."""
    settings = stack.settings
    user_a, user_b = _uid("a"), _uid("b")
    mongo, store = open_store(settings)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        a1 = await connect(es, http, stack.ws_url, settings, user_a)
        a2 = await connect(es, http, stack.ws_url, settings, user_a)
        b1 = await connect(es, http, stack.ws_url, settings, user_b)
        stale_id = f"stale{secrets.token_hex(6)}"
        now = datetime.now(UTC)
        await store._col.insert_one(
            {
                "connectionId": stale_id,
                "userId": user_a,
                "domainName": f"{settings.gateway_host}:{settings.gateway_port}",
                "stage": settings.gateway_stage,
                "connectedAt": now - timedelta(minutes=5),
                "lastSeenAt": now - timedelta(minutes=5),
                "expiresAt": now + timedelta(hours=1),
            }
        )
        publisher = await asyncio.to_thread(Publisher, settings, via=via)  # type: ignore[arg-type]
        payload = {"notificationId": "n1", "title": "hi", "nested": {"n": 1, "list": [1, "two"]}}
        event_id = await asyncio.to_thread(
            publisher.publish, "notification.new", user_ids=[user_a], payload=payload
        )
        publisher.close()
        await wait_for(lambda: len(a1.events()) == 1 and len(a2.events()) == 1)
        for client in (a1, a2):
            frame = client.events()[0]
            assert set(frame) == {"v", "id", "type", "payload", "sentAt"}
            assert frame["v"] == 1
            assert frame["id"] == event_id
            assert frame["type"] == "notification.new"
            assert frame["payload"] == payload
            assert frame["sentAt"].endswith("Z")
        assert a1.events()[0]["sentAt"] == a2.events()[0]["sentAt"]
        await wait_for(lambda: _gone(store, stale_id))
        await asyncio.sleep(0.5)  # B would have had its frame by now, had one been sent
        assert [] == b1.events()
    await mongo.close()


async def _gone(store: object, connection_id: str) -> bool:
    return await store.get(connection_id) is None  # type: ignore[attr-defined, no-any-return]


async def test_malformed_body_is_dead_lettered_and_next_event_still_delivered(stack: Stack) -> None:
    """A body that is not JSON lands in the DLQ with a reason; the valid event after it is delivered."""
    settings = stack.settings
    user = _uid("m")
    marker = secrets.token_hex(8)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, settings, user)
        sqs = sqs_client(settings)
        queue = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody=f"not json {marker}")
        publisher = Publisher(settings)
        event_id = publisher.publish(
            "chat.message",
            user_ids=[user],
            payload={"conversationId": "c1", "messageId": "m1", "senderId": "u0", "text": "after"},
        )
        publisher.close()
        await wait_for(lambda: [e["id"] for e in client.events()] == [event_id])
        dlq = sqs.get_queue_url(QueueName=settings.dlq_name)["QueueUrl"]
        found: dict[str, str] = {}

        def in_dlq() -> bool:
            reply = sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=0,
                MessageAttributeNames=["All"],
            )
            for m in reply.get("Messages", []):
                if marker in m["Body"]:
                    found.update({k: v["StringValue"] for k, v in m["MessageAttributes"].items()})
            return bool(found)

        await wait_for(in_dlq)
        assert found["fanout-reason"] == "not_json"
        sqs.close()
