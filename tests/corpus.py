"""Malformed and hostile input, each with the outcome the worker or the lifecycle must come to: queue bodies
and worker-owned attributes with their dead-letter reason, client frames with their system.error code."""

from __future__ import annotations

import json
import secrets
from typing import Any

from fanout import attributes
from fanout.envelope import now_iso

Attrs = dict[str, dict[str, Any]]


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


def _revoked(topics: Any = ("organization:o1",), **changes: Any) -> dict[str, Any]:
    """A ``system.access.revoked`` body for u1 (valid as it is), changed as given."""
    body = valid(
        type="system.access.revoked",
        payload={"topics": list(topics) if isinstance(topics, tuple) else topics},
    )
    body.update(changes)
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
    ("v is true", json.dumps(valid(v=True)), "unknown_version"),
    ("v is 1.0", json.dumps(valid(v=1.0)), "unknown_version"),
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
    ("seq as text", json.dumps(valid(meta={"seq": "5"})), "schema"),
    ("seq as a float", json.dumps(valid(meta={"seq": 5.0})), "schema"),
    ("broadcast as text", json.dumps(valid(target={"broadcast": "yes"})), "schema"),
    ("broadcast as a number", json.dumps(valid(target={"broadcast": 1})), "schema"),
    (
        "broadcast false as text",
        json.dumps(valid(target={"userIds": ["u1"], "broadcast": "false"})),
        "schema",
    ),
    ("revocation for everyone", json.dumps(_revoked(target={"broadcast": True})), "bad_target"),
    ("revocation for a topic", json.dumps(_revoked(target={"topics": ["organization:o1"]})), "bad_target"),
    (
        "revocation for users and one connection",
        json.dumps(_revoked(target={"userIds": ["u1"], "connectionIds": ["c1"]})),
        "bad_target",
    ),
    (
        "revocation sparing a connection",
        json.dumps(_revoked(target={"userIds": ["u1"], "excludeConnectionIds": ["c1"]})),
        "bad_target",
    ),
    ("revoked topics not a list", json.dumps(_revoked(topics="organization:o1")), "payload_schema"),
    ("no revoked topic", json.dumps(_revoked(topics=[])), "payload_schema"),
    (
        "101 revoked topics",
        json.dumps(_revoked(topics=[f"organization:o{i}" for i in range(101)])),
        "payload_schema",
    ),
    ("a revoked user: topic", json.dumps(_revoked(topics=["organization:o1", "user:u1"])), "payload_schema"),
    ("a revoked topic not kind:id", json.dumps(_revoked(topics=["organization"])), "payload_schema"),
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


def event_body(user: str, secret: str, **changes: Any) -> str:
    """A valid body for ``user`` with a fresh id; ``secret`` in its payload must never be printed."""
    doc = valid(
        id=f"evt_{secrets.token_hex(8)}",
        sentAt=now_iso(),
        payload={"notificationId": "n1", "secret": secret},
        **changes,
    )
    doc["target"] = {"userIds": [user]}
    return json.dumps(doc)


def sns_wrapped(message: Any, **extra: Any) -> str:
    """An SNS notification whose ``Message`` is ``message``, whatever it is."""
    return json.dumps({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                       "Timestamp": "2026-02-17T00:00:00.000Z", "Message": message, **extra})  # fmt: skip


def splice(body: str, token: str) -> str:
    """``body`` with its payload's secret replaced by a raw JSON token."""
    doc = json.loads(body)
    return body.replace(json.dumps(doc["payload"]["secret"]), token)


def hostile_messages(user: str, secret: str) -> list[tuple[str, str, Attrs, str]]:
    """(kind, body, attributes, reason) of every hostile queue message: bodies that break a naive parser,
    the MALFORMED entries SQS accepts, and worker-owned attributes a publisher set wrong. Attribute
    cases carry a valid body for ``user``, which must therefore never reach that user's client."""
    b = lambda: event_body(user, secret)  # noqa: E731 - a fresh id each time
    deep = "[" * 50_000 + "]" * 50_000
    bodies = [
        ("deep array, raw", deep, "not_json"),
        ("deep object, raw", '{"a":' * 20_000 + "1" + "}" * 20_000, "not_json"),
        ("deep payload", splice(b(), "[" * 1000 + "]" * 1000), "not_json"),
        ("deep body inside an SNS Message", sns_wrapped(deep), "not_json"),
        ("deep payload inside an SNS Message", sns_wrapped(splice(b(), "[" * 500 + "]" * 500)), "not_json"),
        ("deep SNS field", sns_wrapped(b()).replace('"Type"', '"Subject": ' + "[" * 400 + "]" * 400 + ', "Type"'), "not_json"),
        ("NaN", splice(b(), "NaN"), "not_json"),
        ("Infinity", splice(b(), "Infinity"), "not_json"),
        ("-Infinity", splice(b(), "-Infinity"), "not_json"),
        ("NaN inside an SNS Message", sns_wrapped(splice(b(), "NaN")), "not_json"),
        ("1e400", splice(b(), "1e400"), "schema"),
        ("-1e400 inside an SNS Message", sns_wrapped(splice(b(), "-1e400")), "schema"),
        ("NaN in an extra meta key", b().replace('"meta": {}', '"meta": {"x": NaN}'), "not_json"),
        ("Infinity deep in meta", b().replace('"meta": {}', '"meta": {"x": [{"y": Infinity}]}'), "not_json"),
        ("1e400 in an extra meta key", b().replace('"meta": {}', '"meta": {"x": 1e400}'), "schema"),
        ("an integer of 5,000 digits", splice(b(), "1" + "0" * 5000), "not_json"),
        ("lone high surrogate", splice(b(), '"\\ud800"'), "not_json"),
        ("lone low surrogate in a key", b().replace('"secret"', '"\\udc00"'), "not_json"),
        ("lone surrogate inside an SNS Message", sns_wrapped(splice(b(), '"\\udbff"')), "not_json"),
        ("lone surrogate as the SNS Message", sns_wrapped("x").replace('"x"', '"\\ud800"'), "not_json"),
        ("SNS Message a number", sns_wrapped(1), "sns_missing_message"),
        ("SNS Message null", sns_wrapped(None), "sns_missing_message"),
        ("SNS Message a list", sns_wrapped([b()]), "sns_missing_message"),
    ]  # fmt: skip
    out = [(kind, raw, {}, reason) for kind, raw, reason in bodies]
    # moto, like SQS, refuses a body over 1 MiB itself; the unit tests cover that entry
    out += [(f"corpus: {n}", raw, {}, reason) for n, raw, reason in MALFORMED if len(raw) < 1024 * 1024]
    s, n = attributes.string, lambda v: {"DataType": "Number", "StringValue": v}
    bad_attrs: list[tuple[str, Attrs]] = [
        ("round a String", {attributes.ROUND: s("1")}),
        ("round not a number", {attributes.ROUND: n("one")}),
        ("round negative", {attributes.ROUND: n("-1")}),
        ("round over 100", {attributes.ROUND: n("101")}),
        ("round a fraction", {attributes.ROUND: n("1.5")}),
        ("round in exponent form", {attributes.ROUND: n("1e2")}),
        ("round Binary", {attributes.ROUND: {"DataType": "Binary", "BinaryValue": b"\x01"}}),
        ("connections not JSON", {attributes.CONNECTIONS: s('["c1"')}),
        ("connections an object", {attributes.CONNECTIONS: s('{"c1": true}')}),
        ("connections a string", {attributes.CONNECTIONS: s('"c1"')}),
        ("connections empty", {attributes.CONNECTIONS: s("[]")}),
        ("connections numbers", {attributes.CONNECTIONS: s("[1, 2]")}),
        ("connections with a space", {attributes.CONNECTIONS: s('["a b"]')}),
        ("connections id too long", {attributes.CONNECTIONS: s(json.dumps(["x" * 129]))}),
        ("connections nested", {attributes.CONNECTIONS: s('[["c1"]]')}),
        ("connections deep", {attributes.CONNECTIONS: s("[" * 100_000 + "]" * 100_000)}),
        ("connections over 50,000", {attributes.CONNECTIONS: s(json.dumps([f"c{i}" for i in range(50_001)]))}),
        ("connections a Number", {attributes.CONNECTIONS: n("5")}),
        ("round fine, connections NaN", {attributes.ROUND: n("1"), attributes.CONNECTIONS: s("[NaN]")}),
    ]  # fmt: skip
    out += [(f"attribute: {kind}", b(), attrs, "bad_attribute") for kind, attrs in bad_attrs]
    return out


#: Client frames the lifecycle cannot use, each with the system.error code it must answer.
CLIENT_FRAMES = [
    ("[" * 10_000 + "]" * 10_000, "bad_frame"),  # nesting past the parser's limit
    ('{"action": "ping", "n": NaN}', "bad_frame"),
    ('{"action": "ping", "s": "\\ud800"}', "bad_frame"),  # a lone surrogate escape
    ('["ping"]', "bad_frame"),
    ("not json", "bad_frame"),
    (json.dumps({"action": "ping", "pad": "x" * 33_000}), "bad_frame"),  # over 32 KiB
    ('{"action": 7}', "unknown_action"),
    ('{"action": "chat.nuke"}', "unknown_action"),
    ('{"action": "subscribe", "topics": "event:1"}', "bad_topics"),
    ('{"action": "subscribe", "topics": ["no-kind"]}', "bad_topics"),
    ('{"action": "subscribe", "topics": [["event:1"]]}', "bad_topics"),
    ('{"action": "unsubscribe", "topics": {"$in": ["event:1"]}}', "bad_topics"),
]
