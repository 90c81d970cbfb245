"""The direct publishers against a real moto server: a body over SNS's 256 KiB is refused before the call,
and one at the limit goes through the topic to the queue."""

from __future__ import annotations

import asyncio
import json

import pytest

from fanout.envelope import QueueBody, parse_body
from fanout.errors import InvalidMessage
from fanout.local.queues import create_queues
from fanout.publish import AsyncPublisher, Publisher, build_event
from fanout.publish.direct import MAX_SNS_BYTES
from tests.catalog_examples import payload
from tests.conftest import Server, dev_settings
from tests.helpers import drain_queue

USERS = [f"user-{i:07d}" for i in range(13_000)]  # about 200 KB of target; the client frame stays small


def sized(size: int, *, text: str = "x") -> QueueBody:
    """A notification whose body is exactly ``size`` bytes, padded in the payload with ``text``."""
    base = build_event("notification.new", user_ids=USERS, payload=payload("notification.new", pad=""))
    missing = size - len(base.to_json().encode())
    per = len(text.encode())
    assert 0 <= missing and missing % per == 0, "the pad must fill the body to the byte"
    body = base.model_copy(update={"payload": {**base.payload, "pad": text * (missing // per)}})
    assert size == len(body.to_json().encode())
    return body


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_sns_refuses_a_body_over_256_kib_before_the_call_and_takes_one_at_it(
    moto_server: Server, kind: str
) -> None:
    """Through SNS a body of 262,145 bytes raises InvalidMessage("too_large") naming SNS's limit, where
    the call would fail on SNS's side; so does one over it in bytes but not in characters, which moto
    (counting characters) would even take; one of exactly 262,144 bytes reaches the queue."""
    settings = dev_settings(moto_server)
    create_queues(settings)
    at_limit = sized(MAX_SNS_BYTES)
    over = [sized(MAX_SNS_BYTES + 1), sized(MAX_SNS_BYTES + 2, text="é")]
    refusals: list[InvalidMessage] = []
    if kind == "sync":
        pub = Publisher(settings, via="sns")
        for body in over:
            with pytest.raises(InvalidMessage) as caught:
                pub.send(body)
            refusals.append(caught.value)
        pub.send(at_limit)
        pub.close()
    else:
        async with AsyncPublisher(settings, via="sns") as apub:
            for body in over:
                with pytest.raises(InvalidMessage) as caught:
                    await apub.send(body)
                refusals.append(caught.value)
            await apub.send(at_limit)
    messages = await asyncio.to_thread(drain_queue, settings, settings.queue_name)
    assert ["too_large", "too_large"] == [r.reason for r in refusals]
    assert f"body of {MAX_SNS_BYTES + 1} bytes is over {MAX_SNS_BYTES} (SNS's limit)" == refusals[0].detail
    assert [at_limit.to_json()] == [parse_body(m["Body"]).to_json() for m in messages]  # SNS-wrapped
    assert "Notification" == json.loads(messages[0]["Body"])["Type"]
    assert 262_144 == MAX_SNS_BYTES


def test_sqs_takes_the_body_sns_refuses(moto_server: Server) -> None:
    """SQS's limit is 1 MiB: a body SNS refuses goes straight to the queue."""
    settings = dev_settings(moto_server)
    create_queues(settings)
    body = sized(MAX_SNS_BYTES + 1)
    pub = Publisher(settings)
    pub.send(body)
    pub.close()
    assert [body.to_json()] == [m["Body"] for m in drain_queue(settings, settings.queue_name)]
