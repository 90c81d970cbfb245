"""The event catalog: every planned type with its model, version, domain and policy; bounded metric labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.catalog import (
    CURRENT,
    DEFAULT_POLICY,
    DOMAINS,
    KNOWN_TYPES,
    OTHER,
    SPECS,
    ChatMessage,
    EventSpec,
    NotificationNew,
    Payload,
    domain_of,
    lookup,
    metric_label,
    policy_for,
    spec_of,
    versions_of,
)
from fanout.catalog.policy import PREFIX_POLICIES, prefix_policy
from fanout.errors import InvalidMessage
from tests.catalog_examples import EXAMPLES

#: The types issue 14 lists, by the plan's features (upcoming RSVPs, saved events, receipts and live
#: check-ins are named by this catalog).
PLANNED = {
    "notification.new", "notification.unread.updated",
    "chat.message", "chat.read", "chat.conversation.updated",
    "follow.request.created", "follow.request.updated",
    "event.rsvp.updated", "event.upcoming.updated",
    "organization.member.updated", "organization.announcement",
    "activity.feed.updated",
    "event.saved.updated",
    "chat.typing.started", "chat.typing.stopped", "user.presence.updated", "chat.receipt.updated",
    "event.attendance.updated",
    "system.notice", "system.reconnect",
}  # fmt: skip


def test_every_planned_type_is_catalogued_at_version_1() -> None:
    """Each type the plan names has a payload model, version 1, and a known domain."""
    assert set() == PLANNED - KNOWN_TYPES
    for event_type in PLANNED:
        spec = CURRENT[event_type]
        assert (1, domain_of(event_type)) == (spec.version, spec.domain)
        assert spec.domain in DOMAINS
        assert issubclass(spec.model, Payload)


def test_typing_indicators_expire_fast_and_notifications_do_not() -> None:
    """A typing indicator is worthless after seconds; a notification keeps for a day."""
    assert policy_for("chat.typing.started").max_age_s <= 10
    assert 0 == policy_for("chat.typing.stopped").rounds
    assert (DEFAULT_POLICY.max_age_s, DEFAULT_POLICY.rounds) == (
        policy_for("notification.new").max_age_s,
        policy_for("notification.new").rounds,
    )


def test_catalogued_policies_keep_the_protocol_ages_and_rounds() -> None:
    """Every entry's maximum age and rounds are the prefix table's (docs/protocol.md section 3)."""
    for spec in SPECS:
        base = prefix_policy(spec.type)
        assert (base.max_age_s, base.rounds) == (spec.policy.max_age_s, spec.policy.rounds), spec.key
    assert {
        "chat.typing",
        "user.presence",
        "event.attendance",
        "system.heartbeat",
        "system.reconnect",
    } == set(PREFIX_POLICIES)
    assert (5, 0) == (policy_for("chat.typing.paused").max_age_s, policy_for("chat.typing.paused").rounds)


@pytest.mark.parametrize(
    ("event_type", "priority"),
    [
        ("chat.typing.started", "urgent"),
        ("user.presence.updated", "urgent"),
        ("chat.receipt.updated", "urgent"),
        ("notification.new", "normal"),
        ("chat.message", "normal"),
        ("system.broadcast", "bulk"),
        ("event.attendance.updated", "bulk"),
        ("event.rsvp.updated", "bulk"),
    ],
)
def test_priorities_follow_the_design(event_type: str, priority: str) -> None:
    """Typing, presence and receipts are urgent; broadcasts and counters bulk; the rest normal."""
    assert priority == policy_for(event_type).priority


def test_ordering_keys_come_from_required_payload_fields() -> None:
    """A chat event is ordered by conversation, an org member change by organization and user."""
    chat = spec_of(ChatMessage)
    assert "chat:c9" == chat.ordering_key(EXAMPLES["chat.message"].wire())
    member = CURRENT["organization.member.updated"]
    assert "organization:org7:u_bob" == member.ordering_key(EXAMPLES["organization.member.updated"].wire())
    assert None is CURRENT["notification.new"].ordering_key(EXAMPLES["notification.new"].wire())


def test_unknown_types_fold_into_one_label() -> None:
    """Metric labels come from the catalog; anything else is 'other'."""
    assert "notification.new" == metric_label("notification.new")
    assert OTHER == metric_label("notification.some_new_thing")
    assert "chat" == domain_of("chat.message")


def test_lookup_by_type_version_and_model() -> None:
    """Entries are found by type and version, and by payload class (or a subclass a service made)."""
    assert lookup("notification.new") is spec_of(NotificationNew)
    assert None is lookup("notification.new", 2)
    assert None is lookup("notification.some_new_thing")
    assert (1,) == versions_of("chat.message")
    assert () == versions_of("chat.unheard.of")

    class MyNotification(NotificationNew):
        internal_rank: int = 0

    assert "notification.new" == spec_of(MyNotification).type
    with pytest.raises(TypeError, match="not a payload of the event catalog"):
        spec_of(Payload)


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_each_example_passes_its_model_on_the_wire(event_type: str) -> None:
    """The example payload of every type, as sent (camelCase), passes the worker's check; so do unknown fields."""
    spec = CURRENT[event_type]
    assert spec is spec_of(type(EXAMPLES[event_type]))
    wire = EXAMPLES[event_type].wire()
    spec.check(wire)
    spec.check({**wire, "addedLater": {"any": ["thing"]}})


def test_the_examples_cover_the_catalog() -> None:
    """tests/catalog_examples.py has one payload per catalogued type, so the end-to-end test covers all."""
    assert KNOWN_TYPES == set(EXAMPLES)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, "payload.conversationId: Field required"),
        ({"conversationId": "c9", "messageId": "m1", "senderId": 7}, "payload.senderId"),
        ({"conversationId": "c9", "messageId": "m1", "senderId": "u", "text": ["x"]}, "payload.text"),
        ({"conversationId": "", "messageId": "m1", "senderId": "u"}, "payload.conversationId"),
        ({"conversation_id": "c9", "message_id": "m1", "sender_id": "u"}, "payload.conversationId"),
        ({"conversationId": "c9", "messageId": "m1", "senderId": "u", "createdAt": "yesterday"}, "createdAt"),
    ],
)
def test_a_payload_off_its_model_is_refused_naming_the_field(payload: dict[str, object], where: str) -> None:
    """A missing, mistyped, empty, snake_case or malformed field is payload_schema, and the detail names
    the field but never its value."""
    with pytest.raises(InvalidMessage) as caught:
        spec_of(ChatMessage).check(payload)
    assert "payload_schema" == caught.value.reason
    assert where in caught.value.detail
    assert "yesterday" not in caught.value.detail


def test_counts_are_json_integers_only() -> None:
    """A count given as "3", 3.0 or true is refused: clients get exactly the type the TypeScript says."""
    spec = CURRENT["notification.unread.updated"]
    spec.check({"unreadCount": 3})
    for bad in ("3", 3.0, True, -1):
        with pytest.raises(InvalidMessage):
            spec.check({"unreadCount": bad})


def test_specs_are_values() -> None:
    """An entry names its version as type@version, the snapshot's key."""
    spec = CURRENT["chat.message"]
    assert isinstance(spec, EventSpec)
    assert "chat.message@1" == spec.key


NONE = "\N{EN DASH}"  # the protocol's table marks an empty cell so


def _names(spec: EventSpec, required: bool) -> str:
    fields = spec.model.model_fields.values()
    return ", ".join(f"`{f.alias}`" for f in fields if f.is_required() == required) or NONE


def _row(spec: EventSpec) -> str:
    p = spec.policy
    age = f"{int(p.max_age_s)} s" if p.max_age_s < 3600 else f"{int(p.max_age_s // 3600)} h"
    ordering = ", ".join(f"`{f}`" for f in p.ordering) or NONE
    cells = [
        f"`{spec.type}`",
        str(spec.version),
        _names(spec, True),
        _names(spec, False),
        p.priority,
        ordering,
    ]
    return "| " + " | ".join([*cells, age, str(p.rounds)]) + " |"


def test_the_protocol_lists_every_entry_as_the_code_declares_it() -> None:
    """docs/protocol.md section 11 has one row per catalogued version with its fields and policy."""
    protocol = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    section = protocol.split("## 11. Event catalog and payload versions", 1)[1]
    assert [] == [spec.key for spec in SPECS if _row(spec) not in section.splitlines()]
