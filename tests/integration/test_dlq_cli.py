"""`fanout dlq inspect` shows why without removing; `fanout dlq redrive` moves messages back."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

from tests.conftest import Stack
from tests.helpers import drain_queue, sqs_client


def _fanout(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fanout", *args], env={**os.environ, **stack.env}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def test_inspect_then_redrive(stack: Stack) -> None:
    """Inspect lists reason and event id (no payload) and leaves the message; redrive filtered by reason moves it."""
    settings = stack.settings
    drain_queue(settings, settings.dlq_name, wait_s=0)
    sqs = sqs_client(settings)
    dlq = sqs.get_queue_url(QueueName=settings.dlq_name)["QueueUrl"]
    secret = secrets.token_hex(8)
    body = json.dumps({"v": 1, "id": "evt_dlq", "type": "notification.new", "payload": {"s": secret}})
    attrs = {"fanout-reason": {"DataType": "String", "StringValue": "retries_exhausted"},
             "fanout-detail": {"DataType": "String", "StringValue": "2 connections"}}  # fmt: skip
    sqs.send_message(QueueUrl=dlq, MessageBody=body, MessageAttributes=attrs)
    sqs.send_message(QueueUrl=dlq, MessageBody="junk", MessageAttributes={**attrs, "fanout-reason": {
        "DataType": "String", "StringValue": "not_json"}})  # fmt: skip

    shown = _fanout(stack, "dlq", "inspect")
    assert 0 == shown.returncode, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {"retries_exhausted", "not_json"} == {item["reason"] for item in lines}
    assert "evt_dlq" in {item["eventId"] for item in lines}
    assert secret not in shown.stdout + shown.stderr

    moved = _fanout(stack, "dlq", "redrive", "--reason", "not_json")
    assert 0 == moved.returncode, moved.stderr
    assert "1 moved" in moved.stderr
    left = drain_queue(settings, settings.dlq_name, wait_s=0)
    # the redriven junk is dead-lettered again by the worker, with the same reason
    assert {"retries_exhausted", "not_json"} >= {
        m["MessageAttributes"]["fanout-reason"]["StringValue"] for m in left
    }
    assert any(m["Body"] == body for m in left)
    sqs.close()
