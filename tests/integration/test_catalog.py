"""Every catalog event end to end: published through the typed helper, it reaches its recipients' real
WebSocket clients with its payload, and nobody else; a payload off its model is dead-lettered."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from fanout import AsyncPublisher, Publisher
from fanout.catalog import CURRENT, KNOWN_TYPES, domain_of
from tests.catalog_examples import EXAMPLES
from tests.conftest import Stack
from tests.helpers import connect, drain_queue, sqs_client, wait_for

#: One process for the module (``make test`` runs one per core): the publish-everything run once.
pytestmark = pytest.mark.xdist_group("catalog")


@dataclass
class Run:
    """What the two clients received after every catalog type was published once."""

    ids: dict[str, str]  # event type -> event id
    topic: str
    alice: list[dict[str, Any]]
    bob: list[dict[str, Any]]


async def _publish_everything(stack: Stack) -> Run:
    alice, bob = f"alice-{secrets.token_hex(4)}", f"bob-{secrets.token_hex(4)}"
    topic = f"event:cat-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        a = await connect(es, http, stack.ws_url, stack.settings, alice)
        b = await connect(es, http, stack.ws_url, stack.settings, bob)
        await a.ws.send_json({"action": "subscribe", "topics": [topic]})
        await wait_for(lambda: any(f.get("type") == "subscribe.ok" for f in a.frames))
        ids = {}
        sync = await asyncio.to_thread(Publisher, stack.settings)
        async with AsyncPublisher(stack.settings) as publisher:
            for event_type, payload in EXAMPLES.items():
                if domain_of(event_type) == "event":  # the event page's audience: topic subscribers
                    ids[event_type] = await publisher.send_event(payload, topics=[topic])
                elif domain_of(event_type) == "system":  # the synchronous publisher's typed helper too
                    ids[event_type] = await asyncio.to_thread(sync.send_event, payload, user_ids=[alice])
                else:
                    ids[event_type] = await publisher.send_event(payload, user_ids=[alice])
        sync.close()
        await wait_for(lambda: set(ids.values()) <= {e["id"] for e in a.events()}, timeout=30)
        await asyncio.sleep(0.5)  # room for a stray frame to reach bob
    return Run(ids, topic, a.events(), b.events())


@pytest.fixture(scope="module")
def run(stack: Stack) -> Run:
    """Publish one event of every catalogued type, then wait once for all of them."""
    return asyncio.run(_publish_everything(stack))


@pytest.mark.parametrize("event_type", sorted(KNOWN_TYPES))
def test_each_catalog_event_reaches_its_recipient_only(run: Run, event_type: str) -> None:
    """The typed helper's event arrives once, as the v1 envelope with the model's camelCase payload, at
    the targeted user (or topic subscriber), and never at the other connected user."""
    event_id = run.ids[event_type]
    [frame] = [e for e in run.alice if e["id"] == event_id]
    key = CURRENT[event_type].ordering_key(EXAMPLES[event_type].wire())  # an ordered type's frame names it
    assert {"v", "id", "type", "payload", "sentAt"} | ({"key"} if key else set()) == set(frame)
    assert key == frame.get("key")
    assert (1, event_type) == (frame["v"], frame["type"])
    assert EXAMPLES[event_type].wire() == frame["payload"]
    assert event_id not in {e["id"] for e in run.bob}


def test_bob_received_nothing(run: Run) -> None:
    """The user no event targeted got no event frame at all."""
    assert [] == run.bob


async def test_a_payload_off_its_model_is_dead_lettered(stack: Stack) -> None:
    """A body whose chat.message payload lacks its ids goes to the DLQ as payload_schema, undelivered."""
    user = f"schema-{secrets.token_hex(4)}"
    event_id = f"evt_bad_{secrets.token_hex(6)}"
    body = {
        "v": 1, "id": event_id, "type": "chat.message", "payload": {"text": "no ids"},
        "sentAt": "2026-02-17T00:00:00.000Z", "target": {"userIds": [user]},
        "meta": {"expiresAt": "2999-01-01T00:00:00Z"},
    }  # fmt: skip
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        sqs = sqs_client(stack.settings)
        url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
        await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody=json.dumps(body))
        sqs.close()
        dead: list[dict[str, Any]] = []

        async def arrived() -> bool:
            dead.extend(await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0))
            return any(json.loads(m["Body"]).get("id") == event_id for m in dead if m["Body"].startswith("{"))

        await wait_for(arrived, timeout=30, every=0.5)
    [letter] = [m for m in dead if m["Body"].startswith("{") and json.loads(m["Body"]).get("id") == event_id]
    attributes = letter["MessageAttributes"]
    assert "payload_schema" == attributes["fanout-reason"]["StringValue"]
    assert (
        "chat.message@1: payload.conversationId: Field required" == attributes["fanout-detail"]["StringValue"]
    )
    assert [] == client.events()
