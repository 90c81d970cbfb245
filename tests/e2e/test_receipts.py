"""Delivery and read receipts end to end: a reader's chat.ack reaches every connection of the message's
sender as chat.receipt.updated with the explicit state; a regression is ignored."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from tests.conftest import Stack
from tests.e2e.conftest import uid
from tests.helpers import Client, connect, wait_for


def _receipts(client: Client) -> list[tuple[str, str, str]]:
    """(message, reader, state) of each receipt a client got, in order."""
    return [
        (f["payload"]["messageId"], f["payload"]["userId"], f["payload"]["state"])
        for f in client.events()
        if f["type"] == "chat.receipt.updated"
    ]


async def _ack(client: Client, frame_id: str, **fields: Any) -> dict[str, Any]:
    await client.ws.send_json({"action": "chat.ack", "id": frame_id, **fields})
    await wait_for(lambda: any(f.get("replyTo") == frame_id for f in client.frames), timeout=10)
    [answer] = [f for f in client.frames if f.get("replyTo") == frame_id]
    return answer


async def test_receipts_reach_the_senders_connections_and_a_regression_is_ignored(
    live_stack: Stack, product_db: Any
) -> None:
    """delivered then read reach both of the sender's tabs in that state; a later delivered for the same
    message is answered with the state held, read, and reaches no one, while the next message's receipt
    still arrives; the reader's own connection gets no receipt."""
    sender, reader, conversation = uid("s"), uid("r"), uid("conv")
    await product_db.conversations.insert_one({"_id": conversation, "participants": [sender, reader]})
    s = live_stack.settings
    ack = {"conversationId": conversation, "senderId": sender}
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        tabs = [await connect(es, http, live_stack.ws_url, s, sender) for _ in range(2)]
        reading = await connect(es, http, live_stack.ws_url, s, reader)
        assert (
            "delivered"
            == (await _ack(reading, "a1", messageId="m1", state="delivered", **ack))["payload"]["state"]
        )
        await wait_for(lambda: all(_receipts(t) == [("m1", reader, "delivered")] for t in tabs), timeout=10)
        await _ack(reading, "a2", messageId="m1", state="read", **ack)
        both = [("m1", reader, "delivered"), ("m1", reader, "read")]
        await wait_for(lambda: all(_receipts(t) == both for t in tabs), timeout=10)

        regression = await _ack(reading, "a3", messageId="m1", state="delivered", **ack)
        assert ("chat.ack.ok", "read") == (regression["type"], regression["payload"]["state"])
        await _ack(reading, "a4", messageId="m2", state="read", **ack)
        await wait_for(lambda: all(len(_receipts(t)) == 3 for t in tabs), timeout=10)
        await asyncio.sleep(0.5)
        assert [*both, ("m2", reader, "read")] == _receipts(tabs[0]) == _receipts(tabs[1])
        assert [] == _receipts(reading)
