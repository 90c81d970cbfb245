"""Typing indicators end to end: WebSocket clients, the emulator running the lifecycle, the worker, moto's
SQS and SecantusDB; the automatic stop comes after FANOUT_TYPING_TIMEOUT_S=1."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from fanout.publish import build_event
from tests.conftest import Stack
from tests.e2e.conftest import uid
from tests.helpers import Client, connect, scrape, sqs_client, wait_for


def _typing(client: Client) -> list[tuple[str, str]]:
    """The typing events a client got: (type, the typing user)."""
    return [
        (f["type"], f["payload"]["userId"]) for f in client.events() if f["type"].startswith("chat.typing.")
    ]


async def test_typing_reaches_the_other_participants_only_and_stops_by_itself(
    live_stack: Stack, product_db: Any
) -> None:
    """started reaches the other participants' connections, not the typist's own tabs nor an outsider;
    a second later every one of them gets the automatic stopped; an explicit stop is announced at once
    and supersedes the scheduled one, so each burst ends with exactly one stopped."""
    typist, b, c, outsider, conversation = uid("t"), uid("b"), uid("c"), uid("o"), uid("conv")
    await product_db.conversations.insert_one({"_id": conversation, "participants": [typist, b, c]})
    s = live_stack.settings
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        mine, my_other_tab, bs, cs, theirs = [
            await connect(es, http, live_stack.ws_url, s, user) for user in (typist, typist, b, c, outsider)
        ]
        frame = {"action": "chat.typing", "conversationId": conversation, "state": "started", "id": "t1"}
        await mine.ws.send_json(frame)
        await wait_for(
            lambda: all(_typing(x) == [("chat.typing.started", typist)] for x in (bs, cs)), timeout=10
        )
        assert any(f.get("replyTo") == "t1" and f["type"] == "chat.typing.ok" for f in mine.frames)
        stopped = [("chat.typing.started", typist), ("chat.typing.stopped", typist)]
        await wait_for(lambda: all(_typing(x) == stopped for x in (bs, cs)), timeout=10)

        await mine.ws.send_json(frame | {"id": "t2"})
        await asyncio.sleep(0.2)
        await mine.ws.send_json(frame | {"state": "stopped", "id": "t3"})
        await wait_for(lambda: len(_typing(bs)) == 4, timeout=10)
        await asyncio.sleep(2)  # the scheduled stop of t2 came due meanwhile, and was superseded
        assert stopped * 2 == _typing(bs) == _typing(cs)
        assert [] == _typing(mine) == _typing(my_other_tab) == _typing(theirs)


async def test_a_typing_event_past_its_expiry_is_never_delivered(live_stack: Stack) -> None:
    """A chat.typing.started sent 6 s ago (its maximum age is 5 s), or with meta.expiresAt behind it,
    is dropped as expired: the client gets the event published after them and neither of them."""
    user, conversation = uid("r"), uid("conv")
    s = live_stack.settings
    old = build_event(
        "chat.typing.started", user_ids=[user], payload={"conversationId": conversation, "userId": "x"}
    )
    stale = old.model_dump(by_alias=True) | {
        "sentAt": (datetime.now(UTC) - timedelta(seconds=6)).isoformat().replace("+00:00", "Z")
    }
    past = build_event(
        "chat.typing.stopped", user_ids=[user], payload={"conversationId": conversation, "userId": "x"},
        meta={"expiresAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()},
    )  # fmt: skip
    marker = build_event("notification.new", user_ids=[user], payload={"notificationId": "n1"})
    before = (await scrape(live_stack.metrics_url)).value("fanout_events_total", outcome="expired")
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, live_stack.ws_url, s, user)
        sqs = sqs_client(s)
        url = sqs.get_queue_url(QueueName=s.queue_name)["QueueUrl"]
        for body in (json.dumps(stale), past.to_json(), marker.to_json()):
            await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody=body)
        sqs.close()
        await wait_for(lambda: any(e["id"] == marker.id for e in client.events()), timeout=10)

        async def counted() -> bool:
            return (await scrape(live_stack.metrics_url)).value(
                "fanout_events_total", outcome="expired"
            ) >= before + 2

        await wait_for(counted, timeout=10)
        assert [marker.id] == [e["id"] for e in client.events()]
