"""Connection identity, tickets, forwarded actions and payload versions on the real local stack:
WebSocket clients, the gateway emulator running the lifecycle, the worker, moto's SQS and SecantusDB."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest

from fanout import Publisher
from tests.catalog_examples import EXAMPLES, payload
from tests.conftest import Stack
from tests.helpers import Client, connect, scrape, sqs_client, wait_for


def _uid(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def _hello(client: Client, **fields: Any) -> dict[str, Any]:
    """Send hello and return the system.connected payload."""
    frame_id = f"h{secrets.token_hex(3)}"
    await client.ws.send_json({"action": "hello", "id": frame_id, "protocols": [1], **fields})
    await wait_for(lambda: any(f.get("replyTo") == frame_id for f in client.frames))
    [answer] = [f for f in client.frames if f.get("replyTo") == frame_id]
    assert "system.connected" == answer["type"]
    return dict(answer["payload"])


async def _publish(stack: Stack, event_type: str, **kwargs: Any) -> str:
    if event_type in EXAMPLES:  # a catalogued type needs a payload its model accepts
        kwargs["payload"] = payload(event_type, **kwargs.get("payload", {}))
    publisher = await asyncio.to_thread(Publisher, stack.settings)
    try:
        return await asyncio.to_thread(publisher.publish, event_type, **kwargs)
    finally:
        publisher.close()


async def test_a_tab_learns_its_id_and_exclude_skips_only_that_tab(stack: Stack) -> None:
    """hello tells a tab its connection id; an event published with that id in excludeConnectionIds reaches
    the user's other tab and phone but not that tab, which still gets the next event."""
    user = _uid("x")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        tab, other_tab, phone = [
            await connect(es, http, stack.ws_url, stack.settings, user) for _ in range(3)
        ]
        me = await _hello(tab)
        assert user == me["userId"] and me["connectionId"]
        ids = {(await _hello(c))["connectionId"] for c in (tab, other_tab, phone)}
        assert 3 == len(ids)
        first = await _publish(
            stack, "notification.new", user_ids=[user], exclude_connection_ids=[me["connectionId"]]
        )
        await wait_for(lambda: other_tab.event_ids() == [first] and phone.event_ids() == [first])
        second = await _publish(stack, "notification.new", user_ids=[user])
        await wait_for(lambda: all(second in c.event_ids() for c in (tab, other_tab, phone)))
        assert [second] == tab.event_ids()


async def test_an_unsupported_payload_version_is_not_posted_and_the_client_is_asked_to_upgrade(
    stack: Stack,
) -> None:
    """A version-2 event reaches the tab that declared version 2; the tab that speaks only version 1 gets
    one system.reconnect (reason upgrade) instead, however many such events follow, and is counted."""
    user, kind = _uid("v"), "chat.sticker.sent"
    before = await _unsupported(stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        new, old = [await connect(es, http, stack.ws_url, stack.settings, user) for _ in range(2)]
        await _hello(new, payloads={kind: [1, 2]})
        await _hello(old, payloads={kind: [1]})
        sent = [await _publish(stack, kind, user_ids=[user], meta={"payloadVersion": 2}) for _ in range(2)]
        marker = await _publish(stack, "notification.new", user_ids=[user])

        # The ask waits for a MongoDB write (ask_upgrade_once) that neither the stickers' posts to the new
        # tab nor the marker (maybe first: a standard queue) wait for; each sticker is counted after it.
        def arrived() -> bool:
            asked = any(e["type"] == "system.reconnect" for e in old.events())
            return asked and set(sent) <= set(new.event_ids()) and marker in old.event_ids()

        await wait_for(arrived)

        async def counted() -> bool:
            return await _unsupported(stack) - before >= 2

        await wait_for(counted)
        await asyncio.sleep(0.3)  # a second reconnect, had one been sent, would have come by now
        asks = [e for e in old.events() if e["type"] == "system.reconnect"]
        assert [{"reason": "upgrade", "eventType": kind, "payloadVersion": 2}] == [a["payload"] for a in asks]
        assert not set(sent) & set(old.event_ids())
        assert {2} == {e["payloadVersion"] for e in new.events() if e["id"] in sent}
    assert 2 == await _unsupported(stack) - before


async def _unsupported(stack: Stack) -> float:
    """Posts left out for a payload version the connection does not speak (counted once its ask is done)."""
    return (await scrape(stack.metrics_url)).value("fanout_deliveries_total", outcome="unsupported_version")


def _inbound(stack: Stack, request_id: str) -> dict[str, Any] | None:
    sqs = sqs_client(stack.settings)
    try:
        url = sqs.get_queue_url(QueueName=stack.settings.inbound_queue_name)["QueueUrl"]
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        ):
            body = json.loads(m["Body"])
            if body["requestId"] == request_id:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                return dict(body)
        return None
    finally:
        sqs.close()


async def test_chat_send_reaches_the_domain_with_the_verified_user_and_the_answer_reaches_that_tab(
    stack: Stack,
) -> None:
    """A chat.send claiming another user lands on the inbound queue with the connection's verified user;
    the domain service answers that one connection through publish (connectionIds) and the user's other
    tab does not get the answer."""
    user = _uid("s")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        tab, other_tab = [await connect(es, http, stack.ws_url, stack.settings, user) for _ in range(2)]
        me = await _hello(tab)
        await tab.ws.send_json({"action": "chat.send", "id": "m1", "userId": "mallory", "text": "hi"})
        await wait_for(lambda: any(f.get("replyTo") == "m1" for f in tab.frames))
        [ack] = [f for f in tab.frames if f.get("replyTo") == "m1"]
        assert "system.accepted" == ack["type"]
        message: dict[str, Any] = {}

        def arrived() -> bool:
            message.update(_inbound(stack, ack["payload"]["requestId"]) or {})
            return bool(message)

        await wait_for(arrived)
        assert (user, me["connectionId"], "chat.send") == (
            message["userId"],
            message["connectionId"],
            message["action"],
        )
        assert "mallory" == message["body"]["userId"]  # carried as sent, never taken as identity
        answer = await _publish(
            stack, "chat.message", connection_ids=[message["connectionId"]],
            payload={"requestId": message["requestId"], "text": "hi"},
        )  # fmt: skip
        marker = await _publish(stack, "notification.new", user_ids=[user])
        await wait_for(lambda: answer in tab.event_ids() and marker in other_tab.event_ids())
        assert answer not in other_tab.event_ids()


def _ticket(stack: Stack, user: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "fanout", "ticket", user], env={**os.environ, **stack.env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


async def _open(
    http: aiohttp.ClientSession, stack: Stack, ticket: str
) -> aiohttp.ClientWebSocketResponse | int:
    try:
        return await http.ws_connect(stack.ws_url, params={"ticket": ticket})
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status


async def test_a_ticket_from_fanout_ticket_connects_once_even_when_presented_twice_at_once(
    stack: Stack,
) -> None:
    """`fanout ticket USER` prints a ticket that connects a real socket as that user; presented again it is
    refused with 401; a fresh ticket presented by two sockets at the same moment lets exactly one in."""
    user = _uid("t")
    async with aiohttp.ClientSession() as http:
        ticket = await asyncio.to_thread(_ticket, stack, user)
        ws = await _open(http, stack, ticket)
        assert not isinstance(ws, int)
        client = Client(user, ws)
        assert user == (await _hello(client))["userId"]
        assert 401 == await _open(http, stack, ticket)
        fresh = await asyncio.to_thread(_ticket, stack, user)
        both = await asyncio.gather(_open(http, stack, fresh), _open(http, stack, fresh))
        assert [401] == [b for b in both if isinstance(b, int)]
        for opened in [b for b in both if not isinstance(b, int)]:
            await opened.close()
        await client.close()


@pytest.mark.parametrize("ticket", ["", "fot_" + "Z" * 43, "x" * 5000], ids=["empty", "unknown", "huge"])
async def test_an_unknown_ticket_is_refused_on_a_real_socket(stack: Stack, ticket: str) -> None:
    """An empty, never-minted or oversized ticket is a 401 at the handshake."""
    async with aiohttp.ClientSession() as http:
        assert 401 == await _open(http, stack, ticket)
