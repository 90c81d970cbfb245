"""chat.typing against a real MongoDB and moto's SQS: who gets the indicators, the scheduled stop and what
supersedes it, the participant check, hostile frames and the per-connection rate."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import datetime

import pytest
from bson import ObjectId

from fanout.errors import ConfigError
from fanout.lifecycle import Lifecycle
from fanout.live.indicators import TypingStore
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings
from tests.helpers import at_window_start
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import send
from tests.unit.lifecycle.live import MakeLive

TYPING = "chat.typing"


def _typing(conversation: object, state: object, **extra: object) -> dict[str, object]:
    return {"action": TYPING, "conversationId": conversation, "state": state, **extra}


async def test_started_goes_to_the_other_participants_and_a_stop_follows_the_timeout(
    make_live: MakeLive,
) -> None:
    """A started frame publishes chat.typing.started to the other participants only, answers chat.typing.ok,
    and schedules chat.typing.stopped one timeout later, with a typing check and the time it is due."""
    live = await make_live(typing_timeout_s=1)
    await live.conversation("c9", "u1", "u2", "u3")
    await live.connect("c1", "u1")
    answer = await send(live.lc, "c1", _typing("c9", "started", id="t1"), route=TYPING)
    assert ("chat.typing.ok", "t1", {"conversationId": "c9", "state": "started"}) == (
        answer["type"], answer["replyTo"], answer["payload"])  # fmt: skip
    [started] = live.drain()
    assert ("chat.typing.started", ["u2", "u3"], None) == (
        started["body"]["type"], started["body"]["target"]["userIds"], started["check"])  # fmt: skip
    assert {"conversationId": "c9", "userId": "u1"} == started["body"]["payload"]
    assert "chat:c9" == started["body"]["meta"]["orderingKey"]
    [stopped] = live.drain(wait_s=3)
    assert ("chat.typing.stopped", ["u2", "u3"]) == (
        stopped["body"]["type"],
        stopped["body"]["target"]["userIds"],
    )
    assert stopped["check"].startswith("typing:")
    due = datetime.fromisoformat(stopped["body"]["sentAt"]) - datetime.fromisoformat(
        started["body"]["sentAt"]
    )
    assert 0.9 <= due.total_seconds() <= 1.5


async def test_on_a_fifo_queue_the_stop_goes_at_once_in_a_group_of_its_own_with_its_due_time(
    make_live: MakeLive,
) -> None:
    """A FIFO events queue takes no DelaySeconds: started goes in the conversation's group and the stop at
    once, in a group of its own (the worker holds it until its sentAt, so it holds up nothing), each with
    its id as deduplication id."""
    suffix = secrets.token_hex(4)
    names = {"queue_name": f"fanout-events-{suffix}.fifo", "dlq_name": f"fanout-events-dlq-{suffix}.fifo"}
    live = await make_live(typing_timeout_s=5, **names)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    answer = await send(live.lc, "c1", _typing("c9", "started", id="t1"), route=TYPING)
    assert "chat.typing.ok" == answer["type"]
    got: dict[str, tuple[str, str, str]] = {}
    for _ in range(2):  # a FIFO group hands out one message at a time: delete each before the next
        reply = live.sqs.receive_message(
            QueueUrl=live.url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        for m in reply.get("Messages", []):
            body = json.loads(m["Body"])
            attrs = m["Attributes"]
            got[body["type"]] = (attrs["MessageGroupId"], attrs["MessageDeduplicationId"], body["id"])
            got[body["type"] + ".sentAt"] = (body["sentAt"], "", "")
            live.sqs.delete_message(QueueUrl=live.url, ReceiptHandle=m["ReceiptHandle"])
    group, dedup, event_id = got["chat.typing.started"]
    assert ("chat:c9", event_id) == (group, dedup)
    group, dedup, event_id = got["chat.typing.stopped"]
    assert (event_id, event_id) == (group, dedup)
    due = datetime.fromisoformat(got["chat.typing.stopped.sentAt"][0]) - datetime.fromisoformat(
        got["chat.typing.started.sentAt"][0]
    )
    assert 4.9 <= due.total_seconds() <= 5.5


async def test_each_started_carries_a_new_token_and_only_the_last_one_settles(make_live: MakeLive) -> None:
    """Two started frames schedule two stops; the store lets only the newer token end the burst, and an
    explicit stop in between would supersede both."""
    live = await make_live(typing_timeout_s=1)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    await send(live.lc, "c1", _typing("c9", "started"))
    await send(live.lc, "c1", _typing("c9", "started"))
    checks = [m["check"] for m in live.drain(wait_s=4, at_least=4) if m["check"]]
    assert 2 == len(set(checks))
    store: TypingStore = live.lc.services.live.typing
    older, newer = sorted(c.removeprefix("typing:") for c in checks)  # ULIDs sort by time
    assert (False, True, True) == (
        await store.settle("c9", "u1", older),
        await store.settle("c9", "u1", newer),
        await store.settle("c9", "u1", newer),  # the same stop received twice holds twice
    )


async def test_an_explicit_stop_is_published_once_and_only_while_typing(make_live: MakeLive) -> None:
    """stopped after started publishes chat.typing.stopped at once; a second stopped, or one without a
    started, publishes nothing and is still answered ok."""
    live = await make_live(typing_timeout_s=60)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    assert "chat.typing.ok" == (await send(live.lc, "c1", _typing("c9", "stopped")))["type"]
    assert [] == live.drain()
    await send(live.lc, "c1", _typing("c9", "started"))
    await send(live.lc, "c1", _typing("c9", "stopped"))
    await send(live.lc, "c1", _typing("c9", "stopped"))
    assert ["chat.typing.started", "chat.typing.stopped"] == sorted(m["body"]["type"] for m in live.drain())


async def test_a_start_the_queue_refused_leaves_the_user_not_typing(make_live: MakeLive) -> None:
    """With the events queue gone, started is answered publish_failed and leaves no typing state: once
    the queue is back, a stopped publishes nothing, as for a user nobody saw typing."""
    live = await make_live(typing_timeout_s=60)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    live.sqs.delete_queue(QueueUrl=live.url)
    failed = await send(live.lc, "c1", _typing("c9", "started"))
    assert ("system.error", "publish_failed") == (failed["type"], failed["payload"]["code"])
    await live.lc.services.events.aclose()  # a fresh container resolves the new queue's URL
    live.url = live.sqs.create_queue(QueueName=live.lc.services.settings.queue_name)["QueueUrl"]
    assert "chat.typing.ok" == (await send(live.lc, "c1", _typing("c9", "stopped")))["type"]
    assert [] == live.drain()


async def test_only_participants_may_type(make_live: MakeLive) -> None:
    """A user outside the conversation, or a conversation nobody stored, gets not_a_participant and
    nothing is published; a participant alone in a conversation publishes nothing either."""
    live = await make_live()
    await live.conversation("c9", "u2", "u3")
    await live.conversation("solo", "u1")
    await live.connect("c1", "u1")
    for conversation in ("c9", "nowhere"):
        answer = await send(live.lc, "c1", _typing(conversation, "started"))
        assert ("system.error", {"code": "not_a_participant"}) == (answer["type"], answer["payload"])
    assert "chat.typing.ok" == (await send(live.lc, "c1", _typing("solo", "started")))["type"]
    assert [] == live.drain()


async def test_hostile_typing_frames_are_answered_with_the_field_at_fault(make_live: MakeLive) -> None:
    """A missing or non-string conversation id, an over-long one, or a state that is neither started nor
    stopped is bad_request naming the field; nothing is stored or published."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    cases = [
        ({"action": TYPING, "state": "started"}, "conversationId"),
        (_typing({"$ne": None}, "started"), "conversationId"),
        (_typing("x" * 257, "started"), "conversationId"),
        (_typing("c9", "STARTED"), "state"),
        (_typing("c9", None), "state"),
    ]
    for frame, field in cases:
        answer = await send(live.lc, "c1", frame)
        assert {"code": "bad_request", "field": field} == answer["payload"]
    assert [] == live.drain()


async def test_a_conversation_id_no_ordering_key_can_hold_is_published_without_one(
    make_live: MakeLive,
) -> None:
    """A conversation of the product whose id has a space, non-ASCII or 124 characters or more makes a key
    ``chat:<id>`` the envelope refuses: its indicators go out without an ordering key, not as a 500."""
    live = await make_live(typing_timeout_s=1)
    odd = ["c 9", "會話", "c" * 256]
    for conversation in odd:
        await live.conversation(conversation, "u1", "u2")
    await live.connect("c1", "u1")
    for conversation in odd:
        answer = await send(live.lc, "c1", _typing(conversation, "started"))
        assert ("chat.typing.ok", conversation) == (answer["type"], answer["payload"]["conversationId"])
    sent = [m["body"] for m in live.drain(wait_s=5, at_least=6)]
    assert sorted(odd * 2) == sorted(b["payload"]["conversationId"] for b in sent)
    assert [None] * 6 == [b["meta"].get("orderingKey") for b in sent]


async def test_typing_frames_are_rate_limited_per_connection(make_live: MakeLive) -> None:
    """With FANOUT_TYPING_RATE=2, five frames sent at once let two through and answer the rest
    rate_limited; another connection of the same user has its own window."""
    live = await make_live(typing_rate=2, typing_timeout_s=60)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    await live.connect("c2", "u1")
    await at_window_start(room_s=3)  # the five at once straddled a boundary once: three passed
    answers = await asyncio.gather(*(send(live.lc, "c1", _typing("c9", "started")) for _ in range(5)))
    assert 2 == sum(a["type"] == "chat.typing.ok" for a in answers)
    assert [{"code": "rate_limited", "max": 2, "windowS": 10}] * 3 == [
        a["payload"] for a in answers if a["type"] == "system.error"
    ]
    assert "chat.typing.ok" == (await send(live.lc, "c2", _typing("c9", "started")))["type"]


async def test_participants_come_from_the_products_resolver_or_its_documents(make_live: MakeLive) -> None:
    """FANOUT_PARTICIPANTS_RESOLVER names a function that answers; without it, a conversation found by an
    ObjectId _id holding ObjectId participants counts, and with FANOUT_CONVERSATION_ID_FIELD one found by
    its own conversationId field."""
    live = await make_live(participants_resolver="tests.unit.lifecycle.live:resolve_participants")
    await live.connect("c1", "u1")
    await send(live.lc, "c1", _typing("team", "started"))
    assert [["u2", "u3"]] == [m["body"]["target"]["userIds"] for m in live.drain()]

    live = await make_live()
    me, other, oid = ObjectId(), ObjectId(), ObjectId()
    await live.conversation(oid, me, other)
    await live.conversation("c7", "u1", "u4", key="conversationId")  # not the field looked up here
    await live.connect("c1", "u1")
    await live.connect("c2", str(me))
    assert "not_a_participant" == (await send(live.lc, "c1", _typing("c7", "started")))["payload"]["code"]
    await send(live.lc, "c2", _typing(str(oid), "started"))
    assert [[str(other)]] == [m["body"]["target"]["userIds"] for m in live.drain()]

    live = await make_live(conversation_id_field="conversationId")
    await live.conversation("c7", "u1", "u4", key="conversationId")
    await live.connect("c1", "u1")
    await send(live.lc, "c1", _typing("c7", "started"))
    assert [["u4"]] == [m["body"]["target"]["userIds"] for m in live.drain()]


async def test_a_resolver_that_cannot_load_stops_the_start_and_one_that_fails_is_an_internal_error(
    make_live: MakeLive, mongo_server: Server
) -> None:
    """A FANOUT_PARTICIPANTS_RESOLVER that cannot be imported fails at start, naming the setting; one that
    raises answers the frame internal_error (500) and publishes nothing."""
    settings = dev_settings(mongo=mongo_server, participants_resolver="tests.unit.lifecycle.nowhere:resolve")
    client = mongo_client(settings)
    try:
        with pytest.raises(ConfigError, match="FANOUT_PARTICIPANTS_RESOLVER"):
            Lifecycle(ConnectionStore.from_client(client, settings.mongo_db, "records"), settings)
    finally:
        await client.close()
    live = await make_live(participants_resolver="tests.unit.lifecycle.live:broken_participants")
    await live.connect("c1", "u1")
    answer = await live.lc.handle(events.message("c1", json.dumps(_typing("c9", "started"))))
    assert (500, "internal_error") == (answer["statusCode"], json.loads(answer["body"])["payload"]["code"])
    assert [] == live.drain()
