"""`fanout dlq inspect` and `redrive` over every kind of message that can reach the DLQ (real moto server)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from fanout import attributes, dlq
from fanout.cli.dlq import run_dlq
from fanout.config import Settings
from fanout.errors import FanoutError
from tests.conftest import Server, dev_settings
from tests.corpus import valid
from tests.helpers import ThrottlingFront

SECRET = "s3cr3t-payload-value"  # noqa: S105 - a marker that must not be printed

#: (body, reason attribute or None for one SQS moved by itself)
HOSTILE: list[tuple[str, str | None]] = [
    (json.dumps(valid(payload={"secret": SECRET})), "retries_exhausted"),
    ("[" * 50_000 + "]" * 50_000, "not_json"),
    ('{"v":1,"id":' + "[" * 3000 + "]" * 3000 + "}", "not_json"),
    ('{"id": NaN, "type": Infinity}', "not_json"),
    ('{"id": "\\ud800", "type": 42}', "schema"),
    (json.dumps({"Type": "Notification", "TopicArn": "a", "Message": {"v": 1}}), "sns_missing_message"),
    (json.dumps({"Type": "Notification", "TopicArn": "a", "Message": "[" * 5000}), "not_json"),
    (json.dumps({"id": "x" * 5000, "type": ["a"]}), "schema"),
    ("plain text", None),
]


@pytest.fixture
def queues(moto_server: Server) -> Iterator[tuple[Settings, Any, str, str]]:
    settings = dev_settings(moto_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    queue = sqs.create_queue(QueueName=settings.queue_name)["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName=settings.dlq_name)["QueueUrl"]
    for body, reason in HOSTILE:
        attrs = attributes.dead_letter(reason, "detail", ["c1", "c2"]) if reason else {}
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attrs)
    yield settings, sqs, queue, dlq_url
    sqs.close()


def test_inspect_shows_every_message_without_its_payload(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each message, however hostile its body, is one JSON line with its reason; no payload is printed."""
    settings, *_ = queues
    assert 0 == dlq.inspect(settings, 50)
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(HOSTILE) == len(lines)
    assert sorted(r or "receive_count_exceeded" for _, r in HOSTILE) == sorted(x["reason"] for x in lines)
    assert all(x["eventId"] is None or len(x["eventId"]) <= 128 for x in lines)
    assert SECRET not in out + err
    assert f"{len(HOSTILE)} shown" in err


def test_redrive_moves_each_back_with_its_connections(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Redrive sends every message back to the queue with its connection list and round 0, and empties the DLQ;
    it names both queues first."""
    settings, sqs, queue, dlq_url = queues
    assert 0 == dlq.redrive(settings, 100, None)
    assert capsys.readouterr().err.startswith(f"redrive: from {settings.dlq_name} to {settings.queue_name}\n")
    back = _drain(sqs, queue)
    assert sorted(b for b, _ in HOSTILE) == sorted(m["Body"] for m in back)
    with_ids = [m for m in back if attributes.CONNECTIONS in m.get("MessageAttributes", {})]
    assert len(with_ids) == sum(1 for _, r in HOSTILE if r)
    assert all(
        attributes.read(m["MessageAttributes"]) == attributes.Routing(0, ("c1", "c2")) for m in with_ids
    )
    depth = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert "0" == depth["Attributes"]["ApproximateNumberOfMessages"]


def test_redrive_to_a_fifo_queue_gives_each_message_a_group(moto_server: Server) -> None:
    """Redriven into a FIFO events queue (which refuses a send without a group), every message arrives,
    each a group of its own."""
    base = dev_settings(moto_server)
    settings = base.model_copy(
        update={"queue_name": f"{base.queue_name}.fifo", "dlq_name": f"{base.dlq_name}.fifo"}
    )
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    try:
        queue = sqs.create_queue(QueueName=settings.queue_name, Attributes={"FifoQueue": "true"})["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName=settings.dlq_name, Attributes={"FifoQueue": "true"})["QueueUrl"]
        for i in range(3):
            sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(valid(id=f"evt_{i}")), MessageGroupId="g",
                             MessageDeduplicationId=f"d{i}", MessageAttributes=attributes.dead_letter("forbidden", "x"))  # fmt: skip
        assert 0 == dlq.redrive(settings, 10, None)
        reply = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"])
        back = reply.get("Messages", [])
    finally:
        sqs.close()
    assert {"evt_0", "evt_1", "evt_2"} == {json.loads(m["Body"])["id"] for m in back}
    assert 3 == len({m["Attributes"]["MessageGroupId"] for m in back})


def test_redrive_keeps_a_checks_and_a_replays_routing(queues: tuple[Settings, Any, str, str]) -> None:
    """A dead-lettered presence check and replay go back with fanout-check and fanout-replay (at round 0):
    without them the check would post unconditionally and the replay post its own body."""
    settings, sqs, queue, dlq_url = queues
    routed = {
        "check-body": attributes.check("presence"),
        "replay-body": attributes.replay(["evt_1", "evt_2"]),
    }
    for body, attrs in routed.items():
        dead = attributes.dead_letter("handler_error", "RuntimeError") | attrs
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=dead)
    assert 0 == dlq.redrive(settings, 100, "handler_error")
    back = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    got = {m["Body"]: attributes.read(m["MessageAttributes"]) for m in back.get("Messages", [])}
    assert {
        "check-body": attributes.Routing(check="presence"),
        "replay-body": attributes.Routing(replay=("evt_1", "evt_2")),
    } == got
    assert not any(attributes.REASON in m["MessageAttributes"] for m in back["Messages"])


def _fill(sqs: Any, dlq_url: str, bodies: list[str]) -> None:
    for body in bodies:
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageAttributes=attributes.dead_letter("forbidden", "x", ["c1"]))  # fmt: skip


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while reply := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages"):
        got += reply
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(reply)],
        )
    return got


def test_redrive_moves_messages_in_batches_within_sqss_limits(
    queues: tuple[Settings, Any, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redrive of 25 more messages (three of 100 KB) sends and deletes them with batch calls of at most
    10 entries and 262,144 bytes of bodies and attributes, and never one message at a time."""
    settings, sqs, queue, dlq_url = queues
    bodies = [json.dumps(valid(id=f"evt_{i}")) for i in range(22)] + [f"{i}" * 100_000 for i in range(3)]
    _fill(sqs, dlq_url, bodies)
    calls: list[tuple[str, dict[str, Any]]] = []
    # botocore's own event hook on the default session redrive's boto3.client uses: calls still reach moto
    session = boto3.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    session.events.register(
        "before-parameter-build.sqs", lambda params, model, **_: calls.append((model.name, dict(params)))
    )
    assert 0 == dlq.redrive(settings, 100, None)
    names = [name for name, _ in calls]
    sends = [params["Entries"] for name, params in calls if name == "SendMessageBatch"]
    assert not {"SendMessage", "DeleteMessage", "ChangeMessageVisibility"} & set(names)
    assert len(HOSTILE) + len(bodies) == sum(len(e) for e in sends)
    assert all(len(e) <= 10 for e in sends)
    assert all(
        sum(attributes.size(x["MessageBody"], x["MessageAttributes"]) for x in e) <= 262_144 for e in sends
    )
    assert len(sends) == names.count("DeleteMessageBatch")
    assert sorted(bodies + [b for b, _ in HOSTILE]) == sorted(m["Body"] for m in _drain(sqs, queue))


def test_a_message_sqs_refuses_stays_in_the_dlq_and_the_redrive_fails(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A message the queue refuses (over its MaximumMessageSize) stays in the DLQ, visible, and is reported
    by count and SQS code without its body; its batch-mates and the rest move; the redrive exits 1."""
    settings, sqs, queue, dlq_url = queues
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"MaximumMessageSize": "1024"})
    _drain(sqs, dlq_url)  # the hostile corpus has bodies over 1 KiB too
    big = SECRET + "x" * 2000
    bodies = [json.dumps(valid(id=f"evt_{i}")) for i in range(24)]
    _fill(sqs, dlq_url, [*bodies[:12], big, *bodies[12:]])
    assert 1 == dlq.redrive(settings, 100, None)
    err = capsys.readouterr().err
    assert sorted(bodies) == sorted(m["Body"] for m in _drain(sqs, queue))
    assert [big] == [m["Body"] for m in _drain(sqs, dlq_url)]  # visible again at once
    assert (
        'redrive: 24 moved to the queue, 1 left in the DLQ (1 not moved: {"InvalidParameterValue": 1})' in err
    )
    assert SECRET not in err


def test_a_message_over_256_kib_is_redriven_alone_with_its_routing(
    queues: tuple[Settings, Any, str, str],
) -> None:
    """A dead-lettered remainder over 256 KiB (no batch can carry it) goes back alone, with its connection
    list at round 0, beside the batched rest."""
    settings, sqs, queue, dlq_url = queues
    _drain(sqs, dlq_url)
    huge = json.dumps(valid(payload={"pad": "x" * 300_000}))
    _fill(sqs, dlq_url, [huge, "small"])
    assert 0 == dlq.redrive(settings, 100, None)
    back = {m["Body"]: attributes.read(m["MessageAttributes"]) for m in _drain(sqs, queue)}
    assert {huge: attributes.Routing(0, ("c1",)), "small": attributes.Routing(0, ("c1",))} == back


def test_a_binary_routing_attribute_does_not_crash_the_redrive(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A DLQ message whose fanout-connections attribute is Binary (anyone who can send to the queue can
    set one; SQS's own redrive keeps it) stays in the DLQ, counted as malformed_routing, and the redrive
    exits 1; the rest of its receive moves (before, attributes.size raised KeyError on it)."""
    settings, sqs, queue, dlq_url = queues
    _drain(sqs, dlq_url)
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody="binary-routing",
        MessageAttributes={attributes.CONNECTIONS: {"DataType": "Binary", "BinaryValue": b"\x00c1"}},
    )
    _fill(sqs, dlq_url, ["a", "b"])
    assert 1 == dlq.redrive(settings, 100, None)
    assert '1 left in the DLQ (1 not moved: {"malformed_routing": 1})' in capsys.readouterr().err
    assert ["a", "b"] == sorted(m["Body"] for m in _drain(sqs, queue))
    assert ["binary-routing"] == [m["Body"] for m in _drain(sqs, dlq_url)]


def test_redrive_with_a_reason_and_a_max_finds_matches_past_the_first_receive(
    queues: tuple[Settings, Any, str, str],
) -> None:
    """`--reason schema --max 5` over a DLQ whose first 20 messages have another reason still moves the
    5 schema messages behind them (before, skipped messages counted towards --max, so it moved none)."""
    settings, sqs, queue, dlq_url = queues
    _drain(sqs, dlq_url)
    _fill(sqs, dlq_url, [f"other-{i}" for i in range(20)])
    for i in range(5):
        sqs.send_message(QueueUrl=dlq_url, MessageBody=f"schema-{i}", MessageAttributes=attributes.dead_letter("schema", "x"))  # fmt: skip
    assert 0 == dlq.redrive(settings, 5, "schema")
    assert sorted(f"schema-{i}" for i in range(5)) == sorted(m["Body"] for m in _drain(sqs, queue))


def test_a_redrive_whose_queue_is_gone_mid_run_says_so_and_hides_nothing(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The events queue (named by URL, so the start does not look it up) is gone: the first send fails
    after the DLQ's messages were received. The CLI prints one line and exits 1, the run's report is
    printed, and every message is visible in the DLQ again at once rather than after HOLD_S."""
    settings, sqs, queue, dlq_url = queues
    sqs.delete_queue(QueueUrl=queue)
    gone = settings.model_copy(update={"queue_url": queue})
    assert 1 == run_dlq(argparse.Namespace(dlq_command="redrive", max=100, reason=None), gone)
    err = capsys.readouterr().err
    assert "redrive: 0 moved to the queue" in err
    assert err.splitlines()[-1].startswith("fanout: error: SQS: ")
    assert "Traceback" not in err
    assert sorted(b for b, _ in HOSTILE) == sorted(m["Body"] for m in _drain(sqs, dlq_url))


def test_entries_sqs_throttles_are_sent_again_within_the_run(
    queues: tuple[Settings, Any, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """SQS fails a batch's entries for the moment (throttled) twice: the redrive sends them again after a
    pause and moves every message, once, exiting 0 (before, they stayed in the DLQ and it exited 1)."""
    settings, sqs, queue, dlq_url = queues
    _drain(sqs, dlq_url)
    bodies = [f"b{i}" for i in range(7)]
    _fill(sqs, dlq_url, bodies)
    with ThrottlingFront(str(settings.aws_endpoint_url), throttle=2) as front:
        code = dlq.redrive(settings.model_copy(update={"aws_endpoint_url": front.url}), 100, None)
    assert (front.throttled, front.sent) == (2, 3)
    assert 0 == code
    assert "redrive: 7 moved to the queue, 0 left in the DLQ" in capsys.readouterr().err
    assert sorted(bodies) == sorted(m["Body"] for m in _drain(sqs, queue))
    assert [] == _drain(sqs, dlq_url)


def test_entries_still_throttled_after_the_retries_stay_in_the_dlq(
    queues: tuple[Settings, Any, str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Throttled on every try: the batch is sent 1 + SEND_RETRIES times, then its messages stay in the
    DLQ, visible at once, counted by SQS's code, and the redrive exits 1."""
    monkeypatch.setattr(dlq, "SEND_RETRIES", 2)
    settings, sqs, queue, dlq_url = queues
    _drain(sqs, dlq_url)
    _fill(sqs, dlq_url, ["a", "b", "c"])
    with ThrottlingFront(str(settings.aws_endpoint_url), throttle=1_000) as front:
        code = dlq.redrive(settings.model_copy(update={"aws_endpoint_url": front.url}), 100, None)
    assert (1, 3) == (code, front.sent)
    assert (
        '0 moved to the queue, 3 left in the DLQ (3 not moved: {"RequestThrottled": 3})'
        in capsys.readouterr().err
    )
    assert [] == _drain(sqs, queue)
    assert ["a", "b", "c"] == sorted(m["Body"] for m in _drain(sqs, dlq_url))


@pytest.mark.parametrize("command", ["inspect", "redrive"])
def test_a_queue_name_sqs_does_not_know_is_named_in_one_line(moto_server: Server, command: str) -> None:
    """A DLQ name SQS does not know: one error naming it and its setting, which the CLI prints as its one
    line (SQS's own words do not say which queue); inspect needs only the DLQ, so a missing events queue
    does not stop it."""
    settings = dev_settings(moto_server)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name)
    run = {"inspect": lambda s: dlq.inspect(s, 10), "redrive": lambda s: dlq.redrive(s, 10, None)}[command]
    with pytest.raises(FanoutError) as caught:
        run(settings)  # the DLQ was never created
    expected = f"SQS has no queue named {settings.dlq_name} (FANOUT_DLQ_NAME; or give FANOUT_DLQ_URL)"
    assert expected == str(caught.value)
    if command == "inspect":  # the DLQ alone: an events queue that is not there does not matter
        sqs.create_queue(QueueName=settings.dlq_name)
        assert 0 == run(settings.model_copy(update={"queue_name": "absent-events-queue"}))
    sqs.close()


@pytest.mark.parametrize("command", ["inspect", "redrive"])
def test_a_max_under_one_is_one_error_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--max 0 or -5 is refused in one line with exit 2, before SQS is asked (it moved nothing, exit 0)."""
    settings = Settings(env="dev", aws_endpoint_url="http://127.0.0.1:9")  # never reached
    for value in (0, -5):
        assert 2 == run_dlq(argparse.Namespace(dlq_command=command, max=value, reason=None), settings)
        assert "fanout: error: --max must be at least 1\n" == capsys.readouterr().err
