"""chat.ack against a real MongoDB and moto's SQS: the sender hears of each real increase once, with the
explicit state; duplicates and regressions collapse, even when they arrive at the same moment."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.unit.lifecycle.conftest import send
from tests.unit.lifecycle.live import MakeLive

ACK = "chat.ack"


def _ack(state: object, message: object = "m1", **extra: Any) -> dict[str, Any]:
    return {
        "action": ACK,
        "conversationId": "c9",
        "messageId": message,
        "senderId": "u2",
        "state": state,
        **extra,
    }


async def test_a_read_receipt_reaches_the_sender_with_its_state(make_live: MakeLive) -> None:
    """delivered then read each publish chat.receipt.updated to the sender only, naming the acknowledging
    user, the message and the explicit state; the acknowledgement answers chat.ack.ok with that state."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2", "u3")
    await live.connect("c1", "u1")
    first = await send(live.lc, "c1", _ack("delivered", id="a1"), route=ACK)
    second = await send(live.lc, "c1", _ack("read"))
    assert ("chat.ack.ok", "a1", {"conversationId": "c9", "messageId": "m1", "state": "delivered"}) == (
        first["type"], first["replyTo"], first["payload"])  # fmt: skip
    assert "read" == second["payload"]["state"]
    published = [m["body"] for m in live.drain()]
    assert [["u2"], ["u2"]] == [b["target"]["userIds"] for b in published]
    assert [("chat.receipt.updated", "delivered"), ("chat.receipt.updated", "read")] == sorted(
        (b["type"], b["payload"]["state"]) for b in published
    )
    payload = published[0]["payload"]
    assert ("c9", "m1", "u1") == (payload["conversationId"], payload["messageId"], payload["userId"])
    assert datetime.fromisoformat(payload["at"]).tzinfo is not None


async def test_duplicates_and_regressions_collapse(make_live: MakeLive) -> None:
    """After read, another read and a delivered publish nothing and answer the state held, read; another
    member's receipt of the same message is its own."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2", "u3")
    await live.connect("c1", "u1")
    await live.connect("c3", "u3")
    await send(live.lc, "c1", _ack("read"))
    live.drain()
    assert ["read", "read"] == [
        (await send(live.lc, "c1", _ack(s)))["payload"]["state"] for s in ("read", "delivered")
    ]
    assert [] == live.drain()
    assert "delivered" == (await send(live.lc, "c3", _ack("delivered")))["payload"]["state"]
    assert [("u3", "delivered")] == [
        (m["body"]["payload"]["userId"], m["body"]["payload"]["state"]) for m in live.drain()
    ]


async def test_a_conversation_id_no_ordering_key_can_hold_still_reaches_the_sender(
    make_live: MakeLive,
) -> None:
    """A conversation id the key ``chat:<id>`` cannot hold (a space, non-ASCII, 124 characters or more)
    publishes the receipt without an ordering key: never a 500 that left the receipt raised, so that the
    acknowledgement sent again was a duplicate and the sender never heard of it."""
    live = await make_live()
    odd = ["c 9", "會話", "c" * 256]
    for conversation in odd:
        await live.conversation(conversation, "u1", "u2")
    await live.connect("c1", "u1")
    for conversation in odd:
        answer = await send(live.lc, "c1", _ack("read", conversationId=conversation))
        assert ("chat.ack.ok", "read") == (answer["type"], answer["payload"]["state"])
    sent = [m["body"] for m in live.drain(wait_s=5, at_least=3)]
    assert sorted(odd) == sorted(b["payload"]["conversationId"] for b in sent)
    assert [(["u2"], None)] * 3 == [(b["target"]["userIds"], b["meta"].get("orderingKey")) for b in sent]


async def test_concurrent_acks_publish_once(make_live: MakeLive) -> None:
    """Ten identical read acknowledgements at the same moment (several tabs, retries) publish exactly one
    receipt: the state is raised by one conditional update."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2")
    for i in range(10):
        await live.connect(f"c{i}", "u1")
    answers = await asyncio.gather(*(send(live.lc, f"c{i}", _ack("read", "m7")) for i in range(10)))
    assert {"read"} == {a["payload"]["state"] for a in answers}
    assert 1 == len(live.drain())


async def test_only_participants_ack_and_only_to_a_participant(make_live: MakeLive) -> None:
    """An acknowledging user outside the conversation, or a named sender outside it, is not_a_participant;
    a receipt of one's own message is answered but published to nobody."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    await live.connect("c4", "u4")
    assert "not_a_participant" == (await send(live.lc, "c4", _ack("read")))["payload"]["code"]
    assert "not_a_participant" == (await send(live.lc, "c1", _ack("read", senderId="u9")))["payload"]["code"]
    own = await send(live.lc, "c1", _ack("read", senderId="u1"))
    assert ("chat.ack.ok", "read") == (own["type"], own["payload"]["state"])
    assert [] == live.drain()


async def test_hostile_acks_are_answered_with_the_field_at_fault(make_live: MakeLive) -> None:
    """Missing ids, ids that are not strings, the state sent (which clients never ack) or an unknown one
    are bad_request naming the field; acks beyond FANOUT_ACK_RATE are rate_limited."""
    live = await make_live(ack_rate=1)
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    cases = [
        ({"action": ACK, "messageId": "m1", "senderId": "u2", "state": "read"}, "conversationId"),
        (_ack("read", message=7), "messageId"),
        (_ack("read", senderId=["u2"]), "senderId"),
        (_ack("sent"), "state"),
        (_ack("seen"), "state"),
    ]
    for frame, field in cases:
        assert {"code": "bad_request", "field": field} == (await send(live.lc, "c1", frame))["payload"]
    assert "chat.ack.ok" == (await send(live.lc, "c1", _ack("read")))["type"]
    # The limit counts per 10 s window of the clock: of the next two acks one may fall in the next
    # window (a CI run once did), never both, so at least one is refused.
    answers = [await send(live.lc, "c1", _ack("read", m)) for m in ("m2", "m3")]
    refused = [a for a in answers if a["payload"].get("code") == "rate_limited"]
    assert refused
    assert 1 + len(answers) - len(refused) == len(live.drain())


async def test_a_receipt_the_queue_refused_is_heard_when_sent_again(make_live: MakeLive) -> None:
    """With the events queue gone, an ack is answered publish_failed and nothing is kept; once the queue is
    back the same ack is a real increase again and reaches the sender."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    live.sqs.delete_queue(QueueUrl=live.url)
    failed = await send(live.lc, "c1", _ack("read"))
    assert ("system.error", "publish_failed") == (failed["type"], failed["payload"]["code"])
    await live.lc.services.events.aclose()  # a fresh container resolves the new queue's URL
    live.url = live.sqs.create_queue(QueueName=live.lc.services.settings.queue_name)["QueueUrl"]
    assert "chat.ack.ok" == (await send(live.lc, "c1", _ack("read")))["type"]
    assert [("u1", "read")] == [
        (m["body"]["payload"]["userId"], m["body"]["payload"]["state"]) for m in live.drain()
    ]


async def test_a_corrupt_receipt_is_raised_over(make_live: MakeLive) -> None:
    """A fanoutreceipts document whose rank is no rank (text, null, missing, NaN, a boolean, 99, an array)
    is no receipt held: a read is raised over it and reaches the sender, and the document holds read with
    an expiry again. Its own state field is never answered: only a rank held counts."""
    live = await make_live()
    await live.conversation("c9", "u1", "u2")
    await live.connect("c1", "u1")
    corrupt: list[dict[str, Any]] = [
        {"rank": "2", "state": "read"},
        {"rank": None, "state": "zzz"},
        {"state": "delivered"},
        {"rank": float("nan"), "state": "delivered"},
        {"rank": True, "state": "delivered"},
        {"rank": 99, "state": "read"},
        {"rank": [2, 5], "state": "read"},
    ]
    db = live.lc.services.store.database
    for i, doc in enumerate(corrupt):
        await db.fanoutreceipts.insert_one({"_id": f'["c9","m{i}","u1"]', **doc})
    answers = [(await send(live.lc, "c1", _ack("read", f"m{i}")))["payload"] for i in range(len(corrupt))]
    assert ["read"] * len(corrupt) == [a.get("state") for a in answers]
    published = sorted(
        (m["body"]["payload"]["messageId"], m["body"]["payload"]["state"]) for m in live.drain()
    )
    assert [(f"m{i}", "read") for i in range(len(corrupt))] == published
    kept = [d async for d in db.fanoutreceipts.find({}, {"rank": 1, "expiresAt": 1})]
    assert [(2, True)] * len(corrupt) == [(d["rank"], isinstance(d["expiresAt"], datetime)) for d in kept]
    # A proper receipt held at read is still a duplicate, answered read and published to nobody.
    assert ["read", "read"] == [
        (await send(live.lc, "c1", _ack(s, "m0")))["payload"]["state"] for s in ("read", "delivered")
    ]
    assert [] == live.drain()
