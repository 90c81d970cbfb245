"""Operations on the dead-letter queue: see what is there and why, move it back after a fix."""

from __future__ import annotations

import json
import sys
from typing import Any

import boto3
from pydantic_core import from_json

from fanout import attributes, queues
from fanout.config import Settings
from fanout.envelope import unwrap_sns
from fanout.errors import InvalidMessage

#: The attributes a redriven message keeps: what narrows or conditions its delivery. Its reason, detail
#: and round are the DLQ's and are dropped.
_ROUTING = (attributes.CONNECTIONS, attributes.SHARD, attributes.CHECK, attributes.REPLAY)


def _clients(settings: Settings) -> tuple[Any, str, str]:
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())  # type: ignore[call-overload]
    return sqs, queues.url(sqs, settings), queues.url(sqs, settings, dlq=True)


def _short(value: Any) -> str | None:
    """An id or type to show: strings only, cut short (a hostile body can hold anything)."""
    return value[:128] if isinstance(value, str) else None


def _summary(message: dict[str, Any]) -> dict[str, Any]:
    """What ``inspect`` shows of a message, whatever its body holds; never the payload."""
    reason, detail = attributes.reason_of(message.get("MessageAttributes"))
    raw = message.get("Body")
    body = raw if isinstance(raw, str) else ""
    event_id = event_type = None
    try:
        doc = from_json(body, allow_inf_nan=True)
        if isinstance(doc, dict) and doc.get("Type") == "Notification":
            doc = from_json(unwrap_sns(doc), allow_inf_nan=True)
        if isinstance(doc, dict):
            event_id, event_type = _short(doc.get("id")), _short(doc.get("type"))
    except (ValueError, InvalidMessage):
        pass
    return {
        "messageId": message["MessageId"],
        "reason": reason,
        "detail": detail,
        "eventId": event_id,
        "eventType": event_type,
        "bytes": len(body.encode()),
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
    """Move messages back to the queue, keeping what routes them (a remainder's connections, a shard's
    buckets, a check, a replay's events), at round 0."""
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
            kept = message.get("MessageAttributes") or {}
            attrs = {k: v for k, v in kept.items() if k in _ROUTING}
            attrs[attributes.ROUND] = attributes.number(0)
            # On a FIFO queue a redriven message is a group of its own: its key's order is long past.
            fifo = queues.fifo_fields(queue, message["MessageId"], message["MessageId"])
            sqs.send_message(QueueUrl=queue, MessageBody=message["Body"], MessageAttributes=attrs, **fifo)
            sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
            if moved % 100 == 0:
                print(f"redrive: {moved} moved", file=sys.stderr)
    for handle in skipped_handles:
        sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=handle, VisibilityTimeout=0)
    print(f"redrive: {moved} moved to the queue, {skipped} left in the DLQ", file=sys.stderr)
    return 0
