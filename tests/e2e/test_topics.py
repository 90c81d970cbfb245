"""Topics end to end: an event published to a topic reaches exactly the connections subscribed to it, and
one that unsubscribes gets no more of it."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import AsyncExitStack

import aiohttp

from fanout import Publisher
from tests.catalog_examples import payload
from tests.conftest import Stack
from tests.helpers import connect, wait_for


async def _announce(stack: Stack, topic: str) -> str:
    publisher = await asyncio.to_thread(Publisher, stack.settings)
    try:
        event = payload("organization.announcement")
        return await asyncio.to_thread(
            publisher.publish, "organization.announcement", topics=[topic], payload=event
        )
    finally:
        publisher.close()


async def test_a_topic_reaches_its_subscribers_only_and_unsubscribe_stops_delivery(stack: Stack) -> None:
    """Two subscribers of event:<id> get its first event and a non-subscriber does not; after one
    unsubscribes (acknowledged with what is left), the next event reaches only the other."""
    topic = f"event:{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        stays, leaves, outsider = [
            await connect(es, http, stack.ws_url, stack.settings, f"t-{secrets.token_hex(4)}")
            for _ in range(3)
        ]
        for client in (stays, leaves):
            answer = await client.ask({"action": "subscribe", "topics": [topic]})
            assert ("subscribe.ok", True) == (answer["type"], topic in answer["payload"]["topics"])
        first = await _announce(stack, topic)
        await wait_for(lambda: first in stays.event_ids() and first in leaves.event_ids())
        answer = await leaves.ask({"action": "unsubscribe", "topics": [topic]})
        assert ("unsubscribe.ok", False) == (answer["type"], topic in answer["payload"]["topics"])
        second = await _announce(stack, topic)
        await wait_for(lambda: second in stays.event_ids())
        await asyncio.sleep(0.5)  # a post to the one that left would have arrived with the other's
    assert [first] == leaves.event_ids()
    assert [first, second] == stays.event_ids()
    assert [] == outsider.event_ids()
