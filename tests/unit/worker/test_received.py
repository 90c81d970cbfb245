"""Parsing a received message never raises: it accepts a body whose client frame is strict JSON, or
rejects it with a documented reason, whatever the body and the worker-owned attributes hold."""

from __future__ import annotations

import json
import time
from datetime import timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fanout import attributes
from fanout.catalog import policy_for
from fanout.envelope import MAX_FRAME_BYTES
from fanout.errors import InvalidMessage
from fanout.worker import fate
from fanout.worker.received import parse
from tests.corpus import valid

#: docs/protocol.md section 4, less ``unparseable``, which would mean a parser bug.
REASONS = {
    "not_json", "schema", "duplicate_target", "unknown_version", "unknown_domain", "empty_target",
    "bad_target", "too_large", "sns_missing_message", "sns_bad_envelope", "bad_attribute", "payload_schema",
}  # fmt: skip

#: Tokens a naive JSON parser takes or chokes on; spliced into the text where a value goes.
RAW_TOKENS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0.0", "1" + "0" * 5000,
    '"\\ud800"', '"\\udfff\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"',
    "[" * 199 + "]" * 199, "[" * 300 + "]" * 300, '{"a":' * 250 + "1" + "}" * 250,
]  # fmt: skip

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.text(st.characters() | surrogates, max_size=12)
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as bare tokens
    | texts
    | st.sampled_from(RAW_TOKENS).map(lambda t: _Raw(t))
)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


class _Raw:
    """A token written into the JSON text as it is (json.dumps could not write it)."""

    def __init__(self, token: str) -> None:
        self.token = token


def dumps(value: Any) -> str:
    """JSON text of ``value`` with every ``_Raw`` leaf spliced in verbatim."""
    raws: list[str] = []

    def mark(obj: Any) -> Any:
        if isinstance(obj, _Raw):
            raws.append(obj.token)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, default=mark)
    for i, token in enumerate(raws):
        text = text.replace(f'"\\u0000RAW{i}\\u0000"', token)
    return text


@st.composite
def near_valid(draw: st.DrawFn) -> str:
    """A valid body with a few fields changed, removed or added, maybe wrapped in SNS."""
    body: dict[str, Any] = valid(id=draw(st.sampled_from(["evt_1", "evt_x.y:z-2"])))
    paths = [("v",), ("id",), ("type",), ("payload",), ("payload", "title"), ("sentAt",), ("target",),
             ("target", "userIds"), ("target", "topics"), ("target", "broadcast"),
             ("target", "excludeConnectionIds"), ("meta",), ("meta", "seq"), ("meta", "expiresAt"),
             ("meta", "extra"), ("extra",)]  # fmt: skip
    for date in ("sentAt", "expiresAt"):
        if draw(st.integers(0, 2)) == 0:
            (body["meta"] if date == "expiresAt" else body)[date] = draw(_dates())
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(paths))
        parent = body
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                parent[key] = {}
            parent = parent[key]
        if draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    text = dumps(body)
    wrap = draw(st.sampled_from(["raw", "raw", "sns", "sns-odd"]))
    if wrap == "raw":
        return text
    sns: dict[str, Any] = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:t",
                           "Timestamp": "2026-02-17T00:00:00.000Z", "Message": text}  # fmt: skip
    if wrap == "sns-odd":
        sns[draw(st.sampled_from(["Message", "MessageId", "SignatureVersion"]))] = draw(json_values)
    return dumps(sns)


def _dates() -> st.SearchStrategy[Any]:
    """Date-like values for sentAt and meta.expiresAt: any datetime with or without an offset (year 1 to
    9999, where conversions overflow), dates, epoch numbers and odd strings."""
    offsets = st.none() | st.timedeltas(
        -timedelta(hours=23, minutes=59), timedelta(hours=23, minutes=59)
    ).map(lambda d: timezone(timedelta(minutes=d // timedelta(minutes=1))))
    stamps = st.datetimes(timezones=offsets).map(lambda d: d.isoformat())
    odd = st.sampled_from(["2026-02-17T00:00:00+24:00", "yesterday", "1970-01-01", 0, -1, 1e10, 253402300800])
    return stamps | st.dates().map(str) | odd | st.integers(-(2**40), 2**40)


bodies = near_valid() | st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1"))

attribute_values = st.fixed_dictionaries(
    {"DataType": st.sampled_from(["String", "Number", "Number.int", "Binary", "String.json", ""])},
    optional={
        "StringValue": st.sampled_from(["0", "1", "3", "100", "101", "-1", "1.5", "1e2", "007", "٣", "", "[]",
                                        '["c1"]', '["c1","c1"]', '["a b"]', "[1]", '{"a":1}', "[", "null",
                                        '["' + "x" * 129 + '"]', "[" * 300])
        | texts
        | json_values.map(dumps),
        "BinaryValue": st.binary(max_size=4),
    },
)  # fmt: skip
message_attributes = st.none() | st.dictionaries(
    st.sampled_from(
        [attributes.ROUND, attributes.CONNECTIONS, attributes.REPLAY, attributes.REASON, "other"]
    ),
    attribute_values | json_values,
    max_size=3,
)


def _refuse(token: str) -> None:
    raise ValueError(f"not strict JSON: {token}")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, attrs=message_attributes, receives=st.sampled_from(["1", "4", "x", None]))
@example(body=json.dumps(valid(meta={"expiresAt": "0001-01-01T00:00:00"})), attrs=None, receives="1")
def test_parse_accepts_strict_frames_or_rejects_with_a_reason(body: str, attrs: Any, receives: Any) -> None:
    """Any body and attributes: accepted with a strict-JSON, UTF-8 frame and a computable expiry, or
    rejected with a documented reason; parse never raises."""
    system = {"ApproximateReceiveCount": receives, "SentTimestamp": "1800000000000"} if receives else {}
    msg = parse({"ReceiptHandle": "r", "MessageId": "m", "Body": body, "MessageAttributes": attrs,
                 "Attributes": system})  # fmt: skip
    if msg.body is None:
        assert isinstance(msg.invalid, InvalidMessage)
        assert msg.invalid.reason in REASONS, msg.invalid
        return
    assert msg.invalid is None
    frame = msg.body.client_frame
    decoded = json.loads(frame.decode("utf-8"), parse_constant=_refuse)
    assert (msg.body.id, msg.body.type) == (decoded["id"], decoded["type"])
    assert len(frame) <= MAX_FRAME_BYTES
    assert 0 <= msg.round <= attributes.MAX_ROUND
    assert msg.only is None or all(attributes.CONNECTION_ID.fullmatch(c) for c in msg.only)
    assert msg.routing.replay is None or len(msg.body.target.connection_ids) == 1
    # accepted means decidable: its expiry is a number, so its fate is decided on this receive
    policy = policy_for(msg.body.type)
    assert isinstance(fate.expires_at(msg, policy), float)
    assert isinstance(fate.before(msg, policy, time.time(), 30, enabled=True), fate.Fate | fate.Deliver)


@given(body=st.binary(max_size=40) | st.none() | st.integers())
def test_a_body_that_is_not_a_string_is_rejected_as_not_json(body: Any) -> None:
    """A ReceiveMessage entry whose Body is not a string is invalid (not_json), never an exception."""
    msg = parse({"ReceiptHandle": "r", "Body": body})
    assert msg.body is None and msg.invalid is not None
    assert "not_json" == msg.invalid.reason


def test_a_replay_must_be_for_one_connection_only() -> None:
    """fanout-replay on a body for users (not exactly one connection) is a bad attribute; on a body for
    one connection it is read as the replay's event ids."""
    attrs = attributes.replay(["evt_1", "evt_2"])
    for_users = parse(
        {"ReceiptHandle": "r", "MessageId": "m", "Body": json.dumps(valid()), "MessageAttributes": attrs}
    )
    assert msg_reason(for_users) == "bad_attribute"
    one = valid(target={"connectionIds": ["c1"]})
    ok = parse({"ReceiptHandle": "r", "MessageId": "m", "Body": json.dumps(one), "MessageAttributes": attrs})
    assert ("evt_1", "evt_2") == ok.routing.replay


def msg_reason(msg: Any) -> str | None:
    return msg.invalid.reason if msg.invalid is not None else None
