"""Carrying out a fate against a real moto server: every id kept, every message under SQS's limit."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiobotocore.session import get_session
from prometheus_client import CollectorRegistry

from fanout import attributes
from fanout.lifecycle.replays import replay_body
from fanout.live import events
from fanout.metrics import Metrics
from fanout.worker.fate import DeadLetter, Fate, Remainder, Shard
from fanout.worker.received import Received, parse
from fanout.worker.settle import Settler
from fanout.worker.sqs import Batcher
from tests.conftest import Server, dev_settings
from tests.corpus import valid


@pytest.fixture
async def settler(moto_server: Server) -> AsyncIterator[tuple[Settler, Any, str, str]]:
    settings = dev_settings(moto_server)
    async with get_session().create_client("sqs", **settings.aws_client_kwargs()) as sqs:
        queue = (await sqs.create_queue(QueueName=settings.queue_name))["QueueUrl"]
        dlq = (await sqs.create_queue(QueueName=settings.dlq_name))["QueueUrl"]
        batcher = Batcher(sqs, queue)
        settler = Settler(sqs, {queue: batcher}, dlq, Metrics(CollectorRegistry()), queue_url=queue)
        yield settler, sqs, queue, dlq


async def _all(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        reply = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId"],
            VisibilityTimeout=60,
        )
        if not reply.get("Messages"):
            return out
        out += reply["Messages"]


def _big_message(users: int) -> Received:
    """A valid body near SQS's limit: a large audience and a large payload."""
    body = valid(
        target={"userIds": [f"user-{i:07d}" for i in range(users)]},
        payload={"notificationId": "n1", "blob": "x" * 100_000},
    )
    return parse({"ReceiptHandle": "r", "MessageId": "m", "Body": json.dumps(body)})


def _ids(n: int) -> tuple[str, ...]:
    return tuple(f"Conn{i:010d}AbCdEf=" for i in range(n))


def _size(m: dict[str, Any]) -> int:
    return attributes.size(m["Body"], m.get("MessageAttributes") or {})


async def test_a_remainder_of_a_near_limit_body_keeps_every_id_under_the_limit(
    settler: tuple[Settler, Any, str, str],
) -> None:
    """A body close to 1 MiB with 60,000 failed connections: every id is re-enqueued, each message fits."""
    s, sqs, queue, _ = settler
    msg = _big_message(users=54_000)
    assert len(msg.raw) > 900_000
    ids = _ids(60_000)
    await s.apply(
        msg, Fate("partial", remainder=Remainder(ids, frozenset({"user-0000001"}), round=1, delay_s=0))
    )
    sent = await _all(sqs, queue)
    assert len(sent) > 1
    assert set(ids) == {
        i for m in sent for i in json.loads(m["MessageAttributes"]["fanout-connections"]["StringValue"])
    }
    assert all(_size(m) <= attributes.MAX_MESSAGE_BYTES for m in sent)
    assert all(["user-0000001"] == json.loads(m["Body"])["target"]["userIds"] for m in sent)  # narrowed


async def test_a_dead_letter_keeps_more_than_4000_ids(settler: tuple[Settler, Any, str, str]) -> None:
    """A retries_exhausted dead letter for 9,000 connections keeps all of them, over as many messages as needed."""
    s, sqs, _, dlq = settler
    msg = _big_message(users=2)
    ids = _ids(9_000)
    letter = DeadLetter("retries_exhausted", "9000 connections", ids, frozenset({"user-0000000"}))
    await s.apply(msg, Fate("failed", dead_letters=(letter,)))
    sent = await _all(sqs, dlq)
    got = [i for m in sent for i in json.loads(m["MessageAttributes"]["fanout-connections"]["StringValue"])]
    assert sorted(ids) == sorted(got)
    assert {"retries_exhausted"} == {m["MessageAttributes"]["fanout-reason"]["StringValue"] for m in sent}
    assert all(_size(m) <= attributes.MAX_MESSAGE_BYTES for m in sent)


async def test_an_invalid_body_at_the_limit_is_cut_to_fit(settler: tuple[Settler, Any, str, str]) -> None:
    """An invalid body of SQS's full size still reaches the DLQ, cut to fit its reason, and says so."""
    s, sqs, _, dlq = settler
    raw = "x" * (attributes.MAX_MESSAGE_BYTES - 10)
    msg = parse({"ReceiptHandle": "r", "MessageId": "m", "Body": raw})
    assert msg.invalid is not None
    await s.apply(msg, Fate("invalid", dead_letters=(DeadLetter(msg.invalid.reason, msg.invalid.detail),)))
    [dead] = await _all(sqs, dlq)
    assert _size(dead) <= attributes.MAX_MESSAGE_BYTES
    assert dead["MessageAttributes"]["fanout-detail"]["StringValue"].endswith("(body truncated)")
    assert 1 == s.tally.dead_lettered


async def test_on_fifo_queues_every_write_names_its_group_and_waits_for_no_delay(moto_server: Server) -> None:
    """With FIFO queues (which refuse a per-message delay and require a group), a remainder goes back at
    once in a group of its own (the worker holds it until due), a dead letter and every shard carry a
    group, and a second apply of the same received message (a crash before the delete) writes nothing
    twice."""
    settings = dev_settings(moto_server)
    fifo = {"FifoQueue": "true"}
    async with get_session().create_client("sqs", **settings.aws_client_kwargs()) as sqs:
        queue = (await sqs.create_queue(QueueName=f"{settings.queue_name}.fifo", Attributes=fifo))["QueueUrl"]
        bulk = (await sqs.create_queue(QueueName=f"{settings.queue_name}-bulk.fifo", Attributes=fifo))[
            "QueueUrl"
        ]
        dlq = (await sqs.create_queue(QueueName=f"{settings.dlq_name}.fifo", Attributes=fifo))["QueueUrl"]
        s = Settler(sqs, {queue: Batcher(sqs, queue)}, dlq, Metrics(CollectorRegistry()), queue_url=queue,
                    bulk_url=bulk)  # fmt: skip
        body = valid(
            target={"userIds": ["u1"], "topics": ["event:1"]}, meta={"orderingKey": "user:u1", "seq": 3}
        )
        msg = parse({"ReceiptHandle": "r", "MessageId": "m-1", "Body": json.dumps(body)}, queue)
        decided = Fate(
            "partial",
            remainder=Remainder(("c1",), frozenset({"u1"}), round=1, delay_s=2),
            dead_letters=(DeadLetter("forbidden", "403", ("c2",), frozenset({"u1"})),),
            shards=(Shard(range=(0, 512)), Shard(range=(512, 1024))),
        )
        await s.apply(msg, decided)
        await s.apply(msg, decided)
        back, dead, parts = await _drain(sqs, queue), await _drain(sqs, dlq), await _drain(sqs, bulk)
    assert (1, 1, 2) == (len(back), len(dead), len(parts))
    assert ["c1"] == json.loads(back[0]["MessageAttributes"]["fanout-connections"]["StringValue"])
    # not the key's group (user:u1): held until due, it holds up no later event of the key
    assert "m-1-r0" == back[0]["Attributes"]["MessageGroupId"]
    assert "forbidden" == dead[0]["MessageAttributes"]["fanout-reason"]["StringValue"]


async def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message, deleting each as it comes: a FIFO group gives its next message only after that."""
    out: list[dict[str, Any]] = []
    while batch := await _all(sqs, url):
        out += batch
        for m in batch:
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


async def test_a_switched_off_event_is_counted_and_deleted(moto_server: Server) -> None:
    """A disabled fate deletes the message, writes nothing else, and counts outcome=disabled for its type."""
    settings = dev_settings(moto_server)
    registry = CollectorRegistry()
    async with get_session().create_client("sqs", **settings.aws_client_kwargs()) as sqs:
        queue = (await sqs.create_queue(QueueName=settings.queue_name))["QueueUrl"]
        dlq = (await sqs.create_queue(QueueName=settings.dlq_name))["QueueUrl"]
        batcher = Batcher(sqs, queue)
        settler = Settler(sqs, {queue: batcher}, dlq, Metrics(registry), queue_url=queue)
        await sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(valid()))
        [received] = (await sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1))["Messages"]
        await settler.apply(parse(received), Fate("disabled"))
        await batcher.flush()
        await asyncio.sleep(1.5)  # past the visibility timeout: a message not deleted would be back
        assert ([], []) == (await _all(sqs, queue), await _all(sqs, dlq))
    assert 1 == settler.tally.disabled
    labels = {"event_type": "notification.new", "outcome": "disabled"}
    assert 1 == registry.get_sample_value("fanout_events_total", labels)


#: What SQS accepts in a message body and in a String attribute's value (SendMessage, MessageAttributeValue);
#: moto accepts anything, so the tests check what the worker sent against this.
SQS_TEXT = re.compile("[\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


@pytest.mark.parametrize("key", ["\u0000", "\u0008tab", "\uffff"])
async def test_an_invalid_body_whose_detail_would_quote_characters_sqs_refuses_is_still_dead_lettered(
    settler: tuple[Settler, Any, str, str], key: str
) -> None:
    """A body with an unknown key spelled as a JSON escape of a character SQS refuses (NUL, a control
    character, U+FFFF) reaches the DLQ with its reason, the key's characters escaped in the detail: sent
    raw, SQS would refuse the dead letter on every receive, and the message reach the DLQ without one."""
    s, sqs, _, dlq = settler
    doc = valid()
    doc[key] = 1
    msg = parse({"ReceiptHandle": "r", "MessageId": "m", "Body": json.dumps(doc)})  # the body is ASCII
    assert msg.invalid is not None
    await s.apply(msg, Fate("invalid", dead_letters=(DeadLetter(msg.invalid.reason, msg.invalid.detail),)))
    [dead] = await _all(sqs, dlq)
    detail = dead["MessageAttributes"][attributes.DETAIL]["StringValue"]
    assert ("schema", msg.raw) == (dead["MessageAttributes"][attributes.REASON]["StringValue"], dead["Body"])
    assert SQS_TEXT.fullmatch(detail) and "Extra inputs are not permitted" in detail


async def test_what_the_worker_writes_back_of_a_payload_holding_u_fffe_or_u_ffff_is_text_sqs_accepts(
    settler: tuple[Settler, Any, str, str],
) -> None:
    """A payload string holding U+FFFE and U+FFFF (JSON escapes in the published, ASCII body): its
    remainder, shards and user slices carry them escaped, so SQS takes them and the event is unchanged;
    written raw, SQS would refuse each write and the whole fan-out would run again on every receive."""
    s, sqs, queue, _ = settler
    payload = {"notificationId": "n1", "note": "a\ufffeb\uffffc\u00e9"}
    doc = valid(target={"userIds": ["u1", "u2"]}, payload=payload)
    msg = parse({"ReceiptHandle": "r", "MessageId": "m", "Body": json.dumps(doc)})
    assert msg.body is not None
    s._bulk = queue  # shards to the events queue here: one queue to read back
    remainder = Remainder(("c1",), frozenset({"u1"}), round=1, delay_s=0)
    shards = (Shard(range=(0, 512)), Shard(users=("u1",)), Shard(users=("u2",)))
    await s.apply(msg, Fate("partial", remainder=remainder, shards=shards))
    sent = await _all(sqs, queue)
    assert 4 == len(sent)
    assert all(SQS_TEXT.fullmatch(m["Body"]) for m in sent)
    assert all(payload == json.loads(m["Body"])["payload"] for m in sent)


async def test_a_dead_lettered_check_or_replay_keeps_what_routes_it(
    settler: tuple[Settler, Any, str, str],
) -> None:
    """A presence check and a replay dead-lettered by the worker keep fanout-check and fanout-replay, so a
    redrive confirms the check again (rather than announcing "offline" unconditionally) and replays the
    kept events (rather than posting the replay's own body)."""
    s, sqs, _, dlq = settler
    check = events.offline("u1", datetime.now(UTC), ["u2"]).to_json()
    messages = [
        parse({"ReceiptHandle": "r1", "MessageId": "m1", "Body": check, "MessageAttributes": attributes.check("presence")}),
        parse({"ReceiptHandle": "r2", "MessageId": "m2", "Body": replay_body("c1").to_json(),
               "MessageAttributes": attributes.replay(["evt_1", "evt_2"])}),
    ]  # fmt: skip
    assert [("presence", None), (None, ("evt_1", "evt_2"))] == [
        (m.routing.check, m.routing.replay) for m in messages
    ]
    for msg in messages:
        await s.apply(msg, Fate("failed", dead_letters=(DeadLetter("handler_error", "RuntimeError"),)))
    dead = sorted(await _all(sqs, dlq), key=lambda m: m["Body"] != check)
    assert [attributes.Routing(check="presence"), attributes.Routing(replay=("evt_1", "evt_2"))] == [
        attributes.read(m["MessageAttributes"]) for m in dead
    ]
    assert ["handler_error"] * 2 == [attributes.reason_of(m["MessageAttributes"])[0] for m in dead]
