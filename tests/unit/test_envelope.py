"""The wire contract: queue body v1, SNS unwrapping, client envelope, schemas, invalid reasons."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fanout.envelope import ClientEnvelope, QueueBody, json_schemas, parse_body
from fanout.errors import InvalidMessage
from fanout.publish import build_event
from tests.corpus import MALFORMED, valid

REASONS = {
    "not_json", "schema", "unknown_version", "unknown_domain", "empty_target", "duplicate_target",
    "bad_target", "too_large", "sns_missing_message", "sns_bad_envelope", "payload_schema",
}  # fmt: skip


def test_valid_body_parses_with_every_field() -> None:
    """A v1 body with every field (docs/protocol.md) parses and keeps the publisher's id and sentAt."""
    body = parse_body(json.dumps(valid(meta={"seq": 7, "traceId": "t-1", "custom": "kept"})))
    assert "evt_corpus" == body.id
    assert "2026-02-17T00:00:00.000Z" == body.sent_at
    assert ["u1"] == body.target.user_ids
    assert 7 == body.meta.seq


def test_sns_wrapped_body_is_unwrapped() -> None:
    """The same body inside an SNS notification parses to the same event."""
    raw = json.dumps(valid())
    wrapped = json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m",
            "TopicArn": "arn:t",
            "Timestamp": "2026-02-17T00:00:00Z",
            "Message": raw,
        }
    )
    assert parse_body(raw) == parse_body(wrapped)


def test_client_frame_is_the_envelope_without_target() -> None:
    """The client gets v, id, type, payload and sentAt (plus seq), never the target."""
    frame = json.loads(parse_body(json.dumps(valid())).client_frame)
    assert {"v": 1, "id": "evt_corpus", "type": "notification.new", "payload": {"notificationId": "n1", "title": "hi"},
            "sentAt": "2026-02-17T00:00:00.000Z"} == frame  # fmt: skip
    with_seq = json.loads(parse_body(json.dumps(valid(meta={"seq": 3}))).client_frame)
    assert 3 == with_seq["seq"]
    ClientEnvelope.model_validate(with_seq)


def test_an_ordered_event_carries_its_seq_and_key_to_clients() -> None:
    """meta.orderingKey and meta.seq reach the client frame as key and seq; the rest of meta does not."""
    meta = {"orderingKey": "conversation:c9", "seq": 41, "traceId": "t"}
    frame = json.loads(parse_body(json.dumps(valid(meta=meta))).client_frame)
    assert ("conversation:c9", 41, "meta") == (
        frame["key"],
        frame["seq"],
        "meta" if "meta" not in frame else "",
    )
    assert ClientEnvelope.model_validate(frame).key == "conversation:c9"


@pytest.mark.parametrize("key", ["", "with space", "x" * 129, "caf\u00e9", "tab\t"])
def test_an_ordering_key_sqs_would_refuse_as_a_group_id_is_a_schema_error(key: str) -> None:
    """An ordering key must be 1-128 printable ASCII characters, what a FIFO MessageGroupId accepts."""
    with pytest.raises(InvalidMessage) as caught:
        parse_body(json.dumps(valid(meta={"orderingKey": key})))
    assert "schema" == caught.value.reason


def test_seq_beyond_what_a_browser_number_holds_is_a_schema_error() -> None:
    """seq stays within 2**53 - 1, so JavaScript reads it exactly."""
    assert 2**53 - 1 == parse_body(json.dumps(valid(meta={"seq": 2**53 - 1}))).meta.seq
    with pytest.raises(InvalidMessage):
        parse_body(json.dumps(valid(meta={"seq": 2**53})))


@pytest.mark.parametrize(("name", "raw", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_body_is_invalid_with_its_reason(name: str, raw: str, reason: str) -> None:
    """Each kind of malformed body raises InvalidMessage with the expected reason."""
    with pytest.raises(InvalidMessage) as caught:
        parse_body(raw)
    assert reason == caught.value.reason


def test_a_revocation_for_users_alone_parses_and_only_it_is_held_to_users() -> None:
    """system.access.revoked targeting userIds parses with its topics; the topic target it may not have is
    still a valid target for any other type."""
    body = parse_body(
        json.dumps(valid(type="system.access.revoked", payload={"topics": ["organization:o1"]}))
    )
    assert (["u1"], ["organization:o1"]) == (body.target.user_ids, body.payload["topics"])
    other = parse_body(json.dumps(valid(target={"topics": ["organization:o1"]})))
    assert ["organization:o1"] == other.target.topics


def test_corpus_has_at_least_twenty_kinds() -> None:
    """The malformed corpus covers at least 20 kinds and every reason."""
    assert len(MALFORMED) >= 20
    assert REASONS == {reason for _, _, reason in MALFORMED}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["v", "id", "type", "payload", "sentAt", "target", "meta"]), value=json_values)
def test_fuzzed_fields_parse_or_fail_with_a_known_reason(key: str, value: object) -> None:
    """Replacing any field with arbitrary JSON either parses or fails with a known reason, never otherwise."""
    try:
        parse_body(json.dumps(valid(**{key: value})))
    except InvalidMessage as exc:
        assert exc.reason in REASONS


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_error(raw: bytes | str) -> None:
    """Random bytes or text are rejected with a known reason (or, rarely, parse)."""
    try:
        parse_body(raw)
    except InvalidMessage as exc:
        assert exc.reason in REASONS


def test_build_event_sets_id_and_sent_at() -> None:
    """The publisher sets a unique evt_ id and a UTC millisecond sentAt."""
    message = {"conversationId": "c1", "messageId": "m1", "senderId": "u2", "text": "x"}
    a = build_event("chat.message", user_ids=["u1"], payload=message)
    b = build_event("chat.message", user_ids=["u1"], payload=message)
    assert a.id.startswith("evt_") and a.id != b.id
    assert a.sent_at.endswith("Z") and len(a.sent_at) == len("2026-02-17T00:00:00.000Z")
    assert a == parse_body(a.to_json())


def test_json_schemas_describe_both_contracts() -> None:
    """`fanout schema` prints the queue body and client envelope schemas with wire names."""
    schemas = json_schemas()
    assert {"queueBody", "clientEnvelope"} == set(schemas)
    assert {"v", "id", "type", "payload", "sentAt", "target"} <= set(schemas["queueBody"]["required"])
    assert "userIds" in schemas["queueBody"]["$defs"]["Target"]["properties"]
    assert QueueBody.model_json_schema(by_alias=True) == schemas["queueBody"]


@pytest.mark.parametrize(("name", "raw", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_the_one_pass_parse_agrees_with_the_reasoned_one(name: str, raw: str, reason: str) -> None:
    """The fast path (pydantic straight from the bytes) never accepts what the reasoned path refuses."""
    from pydantic_core import from_json

    from fanout.envelope import QueueBody, _checked, validate

    try:
        fast: QueueBody | None = _checked(QueueBody.model_validate_json(raw))
    except Exception:
        fast = None
    try:
        slow: QueueBody | None = validate(from_json(raw, allow_inf_nan=False))
    except Exception:
        slow = None
    assert (fast is None) or (slow is not None and fast == slow)


@pytest.mark.parametrize(
    ("key", "bad"),
    [("userIds", ""), ("topics", "!"), ("excludeConnectionIds", ""), ("connectionIds", "")],
)
def test_a_target_list_is_refused_at_its_first_bad_entry(key: str, bad: str) -> None:
    """A target list of 1,000 bad entries gives one error, not one per entry: collecting 100,000 of them
    (a 400 KB body of empty user ids) held the worker's loop for about a second per message."""
    doc = valid()
    doc["target"] = {"userIds": ["u1"], key: [bad] * 1_000}
    with pytest.raises(ValidationError) as refused:
        QueueBody.model_validate_json(json.dumps(doc))
    assert 1 == refused.value.error_count()
    assert (f"target.{key}.0", "schema") == (_where(refused.value), _reason(doc))


def _where(exc: ValidationError) -> str:
    return ".".join(str(part) for part in exc.errors()[0]["loc"])


def _reason(doc: dict[str, object]) -> str:
    with pytest.raises(InvalidMessage) as refused:
        parse_body(json.dumps(doc))
    return refused.value.reason
