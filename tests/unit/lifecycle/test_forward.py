"""Client actions the domain owns: forwarded to the inbound queue (moto's SQS) with the verified identity,
acknowledged with a request id, bounded in size and in rate per connection."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from fanout.inbound import InboundMessage
from fanout.lifecycle import Lifecycle
from fanout.tokens import sign
from tests.conftest import Server
from tests.helpers import at_window_start
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle, send


async def _ready(make_lifecycle: MakeLifecycle, moto: Server, **fields: Any) -> tuple[Lifecycle, Any, str]:
    """A lifecycle with its inbound queue created, and connection c1 of user u1."""
    lc = await make_lifecycle(moto=moto, **fields)
    s = lc.services.settings
    sqs = boto3.client("sqs", **s.aws_client_kwargs())
    url = sqs.create_queue(QueueName=s.inbound_queue_name)["QueueUrl"]
    assert 200 == (await lc.handle(events.connect("c1", token=sign("u1", s.jwt_key()))))["statusCode"]
    return lc, sqs, url


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ):
        bodies += [json.loads(m["Body"]) for m in messages]
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


async def test_chat_send_reaches_the_inbound_queue_with_the_verified_user(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """A chat.send frame claiming another user is forwarded with the record's user and connection, the
    frame untouched as body; the client's acknowledgement carries the same request id and its frame id."""
    lc, sqs, url = await _ready(make_lifecycle, moto_server)
    frame = {"action": "chat.send", "id": "f1", "userId": "mallory", "conversationId": "c9", "text": "hi"}
    ack = await send(lc, "c1", frame, route="chat.send")
    assert ("system.accepted", "f1", "chat.send") == (ack["type"], ack["replyTo"], ack["payload"]["action"])
    [message] = _drain(sqs, url)
    parsed = InboundMessage.model_validate(message)
    assert (parsed.user_id, parsed.connection_id, parsed.action) == ("u1", "c1", "chat.send")
    assert (ack["payload"]["requestId"], "f1", frame) == (parsed.request_id, parsed.reply_to, parsed.body)
    assert parsed.request_id.startswith("req_") and parsed.received_at.endswith("Z")
    assert {"v", "requestId", "action", "userId", "connectionId", "body", "receivedAt", "replyTo"} == set(
        message
    )
    sqs.close()


async def test_route_table_actions_are_forwarded_and_unknown_ones_are_not(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """chat.read and an action from FANOUT_FORWARD_ACTIONS (on $default) are forwarded; an action in no
    table still gets system.error unknown_action and puts nothing on the queue."""
    lc, sqs, url = await _ready(make_lifecycle, moto_server, forward_actions="event.checkin")
    assert (
        "system.accepted" == (await send(lc, "c1", {"action": "chat.read", "conversationId": "c9"}))["type"]
    )
    assert "system.accepted" == (await send(lc, "c1", {"action": "event.checkin", "eventId": "42"}))["type"]
    unknown = await send(lc, "c1", {"action": "chat.delete_everything"})
    assert ("system.error", "unknown_action") == (unknown["type"], unknown["payload"]["code"])
    assert ["chat.read", "event.checkin"] == sorted(m["action"] for m in _drain(sqs, url))
    sqs.close()


async def test_a_frame_over_the_size_limit_is_refused(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """A forwarded frame larger than FANOUT_FORWARD_MAX_BYTES (counted in UTF-8 bytes) is refused with
    frame_too_large and the limit; nothing is forwarded."""
    lc, sqs, url = await _ready(make_lifecycle, moto_server, forward_max_bytes=1024)
    big = await send(lc, "c1", {"action": "chat.send", "text": "é" * 600})  # 600 characters, 1,200 bytes
    assert ("frame_too_large", 1024) == (big["payload"]["code"], big["payload"]["max"])
    assert [] == _drain(sqs, url)
    sqs.close()


async def test_forwarded_frames_are_rate_limited_per_connection_atomically(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """With a rate of 3 per window, ten frames sent at once let exactly three through; the others get
    rate_limited with the limit and window; another connection has a window of its own."""
    lc, sqs, url = await _ready(make_lifecycle, moto_server, forward_rate=3, forward_window_s=3600)
    await at_window_start(room_s=3, window_s=3600)  # the window is the clock's hour: not its last seconds
    frames = [send(lc, "c1", {"action": "chat.send", "id": f"f{i}", "text": "x"}) for i in range(10)]
    answers = await asyncio.gather(*frames)
    assert 3 == sum(a["type"] == "system.accepted" for a in answers)
    refused = [a["payload"] for a in answers if a["type"] == "system.error"]
    assert [{"code": "rate_limited", "max": 3, "windowS": 3600}] * 7 == refused
    token = sign("u2", lc.services.settings.jwt_key())
    assert 200 == (await lc.handle(events.connect("c2", token=token)))["statusCode"]
    assert "system.accepted" == (await send(lc, "c2", {"action": "chat.send", "text": "x"}))["type"]
    assert 4 == len(_drain(sqs, url))
    sqs.close()


async def test_a_new_window_lets_frames_through_again(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """Once the window passes, a connection that hit the limit may forward again."""
    lc, sqs, _ = await _ready(make_lifecycle, moto_server, forward_rate=1, forward_window_s=1)
    for _ in range(5):  # windows are wall-clock: on a busy machine two frames may straddle a boundary
        await asyncio.sleep(1 - time.time() % 1 + 0.05)  # the start of a window
        window = time.time() // 1
        answers = await asyncio.gather(*(send(lc, "c1", {"action": "chat.send"}) for _ in range(2)))
        if time.time() // 1 == window:
            break
    else:
        pytest.fail("no two frames were answered within one window")
    assert ["rate_limited", "system.accepted"] == sorted(a["payload"].get("code", a["type"]) for a in answers)
    await asyncio.sleep(1 - time.time() % 1 + 0.05)  # the next window
    assert "system.accepted" == (await send(lc, "c1", {"action": "chat.send"}))["type"]
    sqs.close()


async def test_a_longer_forward_window_leaves_live_connections_a_window_of_it(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """FANOUT_FORWARD_WINDOW_S raised while connections are open (a container of the new setting meets a
    record an older one counted on): the connection forwards again once a window of the new length
    begins, and the new limit holds in it. Windows were numbered per length, so a 1 s window's number
    (about 1.8e9) stayed ahead of every 2 s window's (about 9e8): as windows only move forward, the
    connection was rate_limited until it reconnected."""
    lc, sqs, url = await _ready(make_lifecycle, moto_server, forward_rate=1, forward_window_s=1)
    assert "system.accepted" == (await send(lc, "c1", {"action": "chat.send"}))["type"]
    s = lc.services.settings
    same = {"mongo_db": s.mongo_db, "inbound_queue_name": s.inbound_queue_name}
    longer = await make_lifecycle(moto=moto_server, forward_rate=1, forward_window_s=2, **same)
    await asyncio.sleep(2 - time.time() % 2 + 0.05)  # a 2 s window, begun after the 1 s one counted in
    answers = [(await send(longer, "c1", {"action": "chat.send"}))["type"] for _ in range(2)]
    assert ["system.accepted", "system.error"] == answers
    assert 2 == len(_drain(sqs, url))
    sqs.close()


async def test_a_missing_inbound_queue_is_answered_not_raised(
    make_lifecycle: MakeLifecycle, moto_server: Server
) -> None:
    """When the inbound queue cannot be reached the client gets system.error forward_failed; the handler
    does not raise (API Gateway would answer a bare 500)."""
    lc = await make_lifecycle(moto=moto_server, inbound_queue_name="no-such-queue-here")
    s = lc.services.settings
    assert 200 == (await lc.handle(events.connect("c1", token=sign("u1", s.jwt_key()))))["statusCode"]
    answer = await send(lc, "c1", {"action": "chat.send", "id": "f9"})
    assert ("system.error", "forward_failed", "f9") == (
        answer["type"],
        answer["payload"]["code"],
        answer["replyTo"],
    )


def test_the_inbound_message_schema_is_strict() -> None:
    """A domain service parsing an inbound message rejects one with unknown fields or another version."""
    good = {"v": 1, "requestId": "req_1", "action": "chat.send", "userId": "u1", "connectionId": "c1",
            "body": {}, "receivedAt": "2026-11-29T20:00:00.000Z"}  # fmt: skip
    assert InboundMessage.model_validate(good).reply_to is None
    for bad in ({**good, "v": 2}, {**good, "admin": True}, {k: v for k, v in good.items() if k != "userId"}):
        with pytest.raises(ValidationError):
            InboundMessage.model_validate(bad)
