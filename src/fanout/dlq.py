"""Operations on the dead-letter queue: see what is there and why, move it back after a fix."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3

from fanout.config import Settings
from fanout.worker.sqs import ATTR_DETAIL, ATTR_ONLY, ATTR_REASON, ATTR_ROUND


def _clients(settings: Settings) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())  # type: ignore[call-overload]
    queue = settings.queue_url or sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    dlq = settings.dlq_url or sqs.get_queue_url(QueueName=settings.dlq_name)["QueueUrl"]
    return sqs, queue, dlq


def _summary(message: dict[str, Any]) -> dict[str, Any]:
    attrs = message.get("MessageAttributes") or {}
    reason = attrs.get(ATTR_REASON, {}).get("StringValue", "receive_count_exceeded")
    detail = attrs.get(ATTR_DETAIL, {}).get("StringValue", "")
    event_id = event_type = None
    try:
        doc = json.loads(message["Body"])
        if isinstance(doc, dict) and doc.get("Type") == "Notification":
            doc = json.loads(doc.get("Message", "null"))
        if isinstance(doc, dict):
            event_id, event_type = doc.get("id"), doc.get("type")
    except ValueError:
        pass
    return {
        "messageId": message["MessageId"],
        "reason": reason,
        "detail": detail,
        "eventId": event_id,
        "eventType": event_type,
        "bytes": len(message["Body"]),
        "receives": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
    }


def _receive(sqs: Any, dlq: str, visibility: int) -> list[dict[str, Any]]:
    reply = sqs.receive_message(
        QueueUrl=dlq,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        VisibilityTimeout=visibility,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    return list(reply.get("Messages", []))


def inspect(settings: Settings, limit: int) -> int:
    """Print one JSON line per dead-lettered message (no payloads) and a count per reason."""
    sqs, _, dlq = _clients(settings)
    seen: dict[str, dict[str, Any]] = {}
    handles = []
    while len(seen) < limit:
        batch = [m for m in _receive(sqs, dlq, 30) if m["MessageId"] not in seen]
        if not batch:
            break
        for message in batch[: limit - len(seen)]:
            seen[message["MessageId"]] = _summary(message)
            handles.append(message["ReceiptHandle"])
            print(json.dumps(seen[message["MessageId"]]))
    # Put them back at once: inspect only looks.
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=dlq, Entries=entries)
    reasons: dict[str, int] = {}
    for item in seen.values():
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    total = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    print(
        f"{len(seen)} shown of about {total['Attributes']['ApproximateNumberOfMessages']} in the DLQ; "
        f"by reason: {json.dumps(reasons)}",
        file=sys.stderr,
    )
    return 0


def redrive(settings: Settings, limit: int, reason: str | None) -> int:
    """Move messages back to the queue, keeping a remainder's connection list."""
    sqs, queue, dlq = _clients(settings)
    # Only what is there now: a message that fails again while we run comes back with a new id.
    present = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    limit = min(limit, int(present["Attributes"]["ApproximateNumberOfMessages"]))
    moved = skipped = 0
    seen = 0
    skipped_handles: list[str] = []
    while moved < limit and seen < limit:
        batch = _receive(sqs, dlq, 60)
        if not batch:
            break
        seen += len(batch)
        for message in batch:
            summary = _summary(message)
            if moved >= limit or (reason and summary["reason"] != reason):
                skipped += 1
                skipped_handles.append(message["ReceiptHandle"])
                continue
            attrs = {k: v for k, v in (message.get("MessageAttributes") or {}).items() if k == ATTR_ONLY}
            attrs[ATTR_ROUND] = {"DataType": "Number", "StringValue": "0"}
            sqs.send_message(QueueUrl=queue, MessageBody=message["Body"], MessageAttributes=attrs)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
            if moved % 100 == 0:
                print(f"redrive: {moved} moved", file=sys.stderr)
    for handle in skipped_handles:
        sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=handle, VisibilityTimeout=0)
    print(f"redrive: {moved} moved to the queue, {skipped} left in the DLQ", file=sys.stderr)
    return 0
