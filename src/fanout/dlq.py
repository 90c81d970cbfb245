"""Operations on the dead-letter queue: see what is there and why, move it back after a fix."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import boto3
from botocore.exceptions import ClientError
from pydantic_core import from_json

from fanout import attributes, queues
from fanout.config import Settings
from fanout.envelope import unwrap_sns
from fanout.errors import FanoutError, InvalidMessage
from fanout.publish.batch import Backoff, Entry, Result, split
from fanout.publish.send import send_batch

#: The attributes a redriven message keeps: what narrows or conditions its delivery. Its reason, detail
#: and round are the DLQ's and are dropped.
_ROUTING = (attributes.CONNECTIONS, attributes.SHARD, attributes.CHECK, attributes.REPLAY)


def _client(settings: Settings) -> Any:
    return boto3.client("sqs", **settings.aws_client_kwargs())


def _url(sqs: Any, settings: Settings, *, dlq: bool) -> str:
    """The queue's URL; a ``FanoutError`` naming the queue and its setting when SQS has no queue of that
    name (its own words say only "the specified queue does not exist", not which of the two)."""
    try:
        return queues.url(sqs, settings, dlq=dlq)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if "NonExistentQueue" not in code and "QueueDoesNotExist" not in code:
            raise
        name, variable = (settings.dlq_name, "DLQ") if dlq else (settings.queue_name, "QUEUE")
        raise FanoutError(
            f"SQS has no queue named {name} (FANOUT_{variable}_NAME; or give FANOUT_{variable}_URL)"
        ) from None


def _name(url: str) -> str:
    """A queue's name: the last part of its URL."""
    return url.rstrip("/").rsplit("/", 1)[-1]


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


#: How long redrive keeps what it received invisible: what it leaves is made visible again at the end.
HOLD_S = 300
#: How many more times redrive sends a batch's entries SQS did not take for the moment (throttled, an
#: internal error), after pauses of 0.1 s doubling (with jitter): at most about 3 s before they are left.
SEND_RETRIES = 5


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
    sqs = _client(settings)
    dlq = _url(sqs, settings, dlq=True)  # inspect needs no events queue
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
    _release(sqs, dlq, handles)  # inspect only looks
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
    buckets, a check, a replay's events), at round 0. Each batch is sent before it is deleted, so a crash
    leaves a message in both queues, never in neither. Exits 1 when any message could not be moved."""
    sqs = _client(settings)
    queue, dlq = _url(sqs, settings, dlq=False), _url(sqs, settings, dlq=True)
    # Which queues, by name (a URL's last part): with no FANOUT_DLQ_URL the name finds the DLQ, which may
    # not be the stack the operator meant.
    print(f"redrive: from {_name(dlq)} to {_name(queue)}", file=sys.stderr)
    # Only what is there now: a message that fails again while we run comes back with a new id.
    present = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    there = int(present["Attributes"]["ApproximateNumberOfMessages"])
    limit = min(limit, there)
    moved = skipped = seen = 0
    refused: Counter[str] = Counter()  # why a message was not sent (SQS's error code): it stays in the DLQ
    undeleted: Counter[str] = Counter()  # sent, but their delete from the DLQ failed: now in both
    held: list[str] = []  # skipped or refused: invisible until the end, so no receive here sees them again
    examined: set[str] = set()  # message ids: one that comes back within the run is not counted twice
    handles: dict[str, str] = {}  # receipt handles of what is being moved, by message id, until settled
    try:
        while moved < limit and seen < there:  # skipped messages count as seen: --max counts moves
            received = _receive(sqs, dlq, HOLD_S)
            if not received:
                break
            seen += len(received)
            entries: list[Entry] = []
            for message in received:
                if message["MessageId"] in examined:  # back after HOLD_S in a long run: counted already
                    held.append(message["ReceiptHandle"])
                    continue
                examined.add(message["MessageId"])
                if moved + len(entries) >= limit or (
                    reason and attributes.reason_of(message.get("MessageAttributes"))[0] != reason
                ):
                    skipped += 1
                    held.append(message["ReceiptHandle"])
                    continue
                entry = _entry(message)
                if entry is None:  # a routing attribute that is not text: moved, it could reach more
                    refused["malformed_routing"] += 1
                    held.append(message["ReceiptHandle"])
                    continue
                handles[message["MessageId"]] = message["ReceiptHandle"]
                entries.append(entry)
            for batch in split(entries):
                result = _send(sqs, queue, batch)
                # Not sent, for its content or still for the moment (throttled): it stays, counted by code.
                for entry, code in [*result.refused, *((e, result.why or "failed") for e in result.retry)]:
                    refused[code] += 1
                    held.append(handles.pop(entry.id))
                if result.sent:
                    undeleted += _delete(sqs, dlq, [handles.pop(entry.id) for entry in result.sent])
                before, moved = moved, moved + len(result.sent)
                if moved // 100 > before // 100:
                    print(f"redrive: {moved} moved", file=sys.stderr)
    finally:  # also when a call fails mid-run: what was held becomes visible again now, not in HOLD_S
        _report(moved, skipped, refused, undeleted)
        _release(sqs, dlq, [*held, *handles.values()])
    return 1 if refused or undeleted else 0


def _send(sqs: Any, queue: str, batch: list[Entry]) -> Result:
    """Send one batch, and send again what SQS did not take for the moment, up to ``SEND_RETRIES``
    times after a pause (within ``HOLD_S``: the receipt handles stay valid). What it refused for its
    content is not sent again."""
    result = send_batch(sqs, queue, batch)
    backoff = Backoff()
    for _ in range(SEND_RETRIES):
        if not result.retry:
            break
        time.sleep(backoff.failed())
        try:
            again = send_batch(sqs, queue, result.retry)
        except Exception:  # the call failed whole: what was sent is settled, the rest stays
            break
        result = Result(result.sent + again.sent, again.retry, result.refused + again.refused, again.why)
    return result


def _report(moved: int, skipped: int, refused: Counter[str], undeleted: Counter[str]) -> None:
    """The redrive's last line: what moved, what stayed and why."""
    left = skipped + refused.total()
    line = f"redrive: {moved} moved to the queue, {left} left in the DLQ"
    if refused:
        line += f" ({refused.total()} not moved: {json.dumps(dict(refused))})"
    if undeleted:
        line += f"; {undeleted.total()} sent but not deleted from the DLQ: {json.dumps(dict(undeleted))}"
    print(line, file=sys.stderr)


def _entry(message: dict[str, Any]) -> Entry | None:
    """A DLQ message as a send: its routing attributes at round 0; on a FIFO queue a group of its own
    (its key's order is long past), its message id as group and deduplication id. None when a routing
    attribute is not a string or number (Binary, say): the worker would refuse it anyway."""
    kept = message.get("MessageAttributes") or {}
    attrs = {k: v for k, v in kept.items() if k in _ROUTING}
    if not all(isinstance(v, dict) and isinstance(v.get("StringValue"), str) for v in attrs.values()):
        return None
    attrs = {k: {"DataType": str(v["DataType"]), "StringValue": v["StringValue"]} for k, v in attrs.items()}
    attrs[attributes.ROUND] = attributes.number(0)
    body = message["Body"]
    return Entry(message["MessageId"], "", body, attributes.size(body, attrs), attrs=attrs)


def _delete(sqs: Any, dlq: str, handles: list[str]) -> Counter[str]:
    """Delete up to ten messages; the error code of each delete that failed."""
    entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    reply = sqs.delete_message_batch(QueueUrl=dlq, Entries=entries)
    return Counter(str(failed.get("Code") or "failed")[:64] for failed in reply.get("Failed", []))


def _release(sqs: Any, dlq: str, handles: list[str]) -> None:
    """Make received messages visible again at once, ten per call."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=dlq, Entries=entries)
