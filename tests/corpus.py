"""Malformed queue bodies, each with the reason the worker must give for dead-lettering it."""

from __future__ import annotations

import json
from typing import Any


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "id": "evt_corpus",
        "type": "notification.new",
        "payload": {"notificationId": "n1", "title": "hi"},
        "sentAt": "2026-02-17T00:00:00.000Z",
        "target": {"userIds": ["u1"], "topics": [], "broadcast": False, "excludeConnectionIds": []},
        "meta": {},
    }
    body.update(changes)
    return body


def _without(key: str) -> dict[str, Any]:
    body = valid()
    del body[key]
    return body


def _sns(message: Any, **extra: Any) -> str:
    doc = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:fanout-events",
        "Timestamp": "2026-02-17T00:00:00.000Z",
        **extra,
    }
    if message is not None:
        doc["Message"] = message
    return json.dumps(doc)


#: (name, raw body, expected reason)
MALFORMED: list[tuple[str, str, str]] = [
    ("empty string", "", "not_json"),
    ("plain text", "hello world", "not_json"),
    ("truncated json", '{"v": 1, "id": "x"', "not_json"),
    ("json array", "[1, 2, 3]", "schema"),
    ("json string", '"just a string"', "schema"),
    ("json null", "null", "schema"),
    ("missing v", json.dumps(_without("v")), "unknown_version"),
    ("v is 2", json.dumps(valid(v=2)), "unknown_version"),
    ("v is a string", json.dumps(valid(v="1")), "unknown_version"),
    ("missing id", json.dumps(_without("id")), "schema"),
    ("empty id", json.dumps(valid(id="")), "schema"),
    ("id with spaces", json.dumps(valid(id="evt 1")), "schema"),
    ("missing type", json.dumps(_without("type")), "schema"),
    ("uppercase type", json.dumps(valid(type="Notification.New")), "schema"),
    ("type without a name", json.dumps(valid(type="notification")), "schema"),
    ("unknown domain", json.dumps(valid(type="billing.invoice.paid")), "unknown_domain"),
    ("payload is a list", json.dumps(valid(payload=[1, 2])), "schema"),
    ("payload missing", json.dumps(_without("payload")), "schema"),
    ("sentAt not a date", json.dumps(valid(sentAt="yesterday")), "schema"),
    ("sentAt without zone", json.dumps(valid(sentAt="2026-02-17T00:00:00")), "schema"),
    ("target missing", json.dumps(_without("target")), "schema"),
    (
        "target empty",
        json.dumps(valid(target={"userIds": [], "topics": [], "broadcast": False})),
        "empty_target",
    ),
    ("duplicate user ids", json.dumps(valid(target={"userIds": ["u1", "u1"]})), "duplicate_target"),
    ("duplicate topics", json.dumps(valid(target={"topics": ["event:1", "event:1"]})), "duplicate_target"),
    ("unknown top-level key", json.dumps(valid(extra=True)), "schema"),
    ("unknown target key", json.dumps(valid(target={"userIds": ["u1"], "groups": ["g"]})), "schema"),
    (
        "payload over 128 KiB",
        json.dumps(valid(payload={"notificationId": "n1", "blob": "x" * (129 * 1024)})),
        "too_large",
    ),
    (
        "body over 1 MiB",
        json.dumps(valid(payload={"notificationId": "n1", "blob": "x" * (1024 * 1024 + 10)})),
        "too_large",
    ),
    (
        "catalogued payload without a required field",
        json.dumps(valid(payload={"title": "hi"})),
        "payload_schema",
    ),
    (
        "catalogued payload field of the wrong type",
        json.dumps(valid(payload={"notificationId": 7})),
        "payload_schema",
    ),
    (
        "catalogued payload field as a string number",
        json.dumps(valid(payload={"notificationId": "n1", "unreadCount": "3"})),
        "payload_schema",
    ),
    (
        "catalogued payload in snake_case",
        json.dumps(valid(payload={"notification_id": "n1"})),
        "payload_schema",
    ),
    ("catalogued payload, unknown version", json.dumps(valid(meta={"payloadVersion": 9})), "payload_schema"),
    ("payload version 0", json.dumps(valid(meta={"payloadVersion": 0})), "schema"),
    ("negative seq", json.dumps(valid(meta={"seq": -1})), "schema"),
    ("sns without Message", _sns(None), "sns_missing_message"),
    ("sns Message not a string", _sns({"v": 1}), "sns_missing_message"),
    (
        "sns without MessageId",
        json.dumps({"Type": "Notification", "TopicArn": "a", "Message": "{}"}),
        "sns_bad_envelope",
    ),
    ("sns Message not json", _sns("not json"), "not_json"),
    ("sns unknown signature version", _sns("{}", SignatureVersion="9", Signature="x"), "sns_bad_envelope"),
    ("sns Message invalid body", _sns(json.dumps(valid(v=3))), "unknown_version"),
]
