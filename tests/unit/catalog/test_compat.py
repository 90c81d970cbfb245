"""The payload contract: the catalog agrees with the committed schema snapshot, and only additive changes
pass within a version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import ConfigDict, Field

from fanout.catalog import CURRENT, SPECS, Payload
from fanout.catalog._base import Count, Id, Text, Timestamp, event
from fanout.catalog.compat import check, current, load, problems, update
from fanout.catalog.export import payload_schema


def test_the_catalog_matches_the_committed_snapshot() -> None:
    """Every catalogued version is in src/fanout/catalog/schemas.snapshot.json, and no model changed
    incompatibly since (fix: a new version; or `python -m fanout.catalog.compat --update` for additions)."""
    assert [] == check(load(), current())
    assert {spec.key for spec in SPECS} == set(load())


# A recorded version, and edits of it a developer might make. Each is ChatMessage-like.
class Recorded(Payload):
    """A message."""

    conversation_id: Id
    message_id: Id
    text: Text | None = None
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class AddsAnOptionalField(Recorded):
    """A message, now with its edit time."""

    edited_at: Timestamp | None = None


class RewordsADescription(Payload):
    """A message in a conversation (reworded)."""

    conversation_id: Id = Field(description="the conversation it was sent in")
    message_id: Id
    text: Text | None = None
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class RemovesAField(Payload):
    conversation_id: Id
    message_id: Id
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class ChangesAType(Payload):
    conversation_id: Id
    message_id: Id
    text: int | None = None
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class AddsARequiredField(Recorded):
    sender_id: Id


class MakesAFieldRequired(Payload):
    conversation_id: Id
    message_id: Id
    text: Text
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class MakesARequiredFieldOptional(Payload):
    conversation_id: Id
    message_id: Id | None = None
    text: Text | None = None
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class AddsAState(Payload):
    conversation_id: Id
    message_id: Id
    text: Text | None = None
    state: Literal["sent", "delivered", "read"] | None = None
    count: Count | None = None


class TightensAConstraint(Payload):
    conversation_id: Id
    message_id: Id
    text: Text | None = Field(default=None, max_length=100)
    state: Literal["sent", "read"] | None = None
    count: Count | None = None


class RefusesUnknownFields(Recorded):
    model_config = ConfigDict(extra="forbid")


def _schema(model: type[Payload]) -> dict[str, object]:
    return payload_schema(event("chat.message", model))


@pytest.mark.parametrize("model", [AddsAnOptionalField, RewordsADescription])
def test_additive_changes_are_compatible(model: type[Payload]) -> None:
    """A new optional field or a reworded description keeps the version."""
    assert [] == problems(_schema(Recorded), _schema(model))


@pytest.mark.parametrize(
    ("model", "found"),
    [
        (RemovesAField, "payload.text: removed"),
        (ChangesAType, "payload.text: type changed from 'string' to 'integer'"),
        (AddsARequiredField, "payload.senderId: newly required"),
        (MakesAFieldRequired, "payload.text: newly required"),
        (MakesARequiredFieldOptional, "payload.messageId: no longer required"),
        (AddsAState, "payload.state: enum changed"),
        (TightensAConstraint, "payload.text: maxLength changed from 10000 to 100"),
        (RefusesUnknownFields, "payload: unknown fields are refused"),
    ],
)
def test_incompatible_changes_are_caught(model: type[Payload], found: str) -> None:
    """Removing, retyping, requiring or un-requiring a field, a new enum value, a tighter constraint or
    refusing unknown fields each needs a new version."""
    reported = problems(_schema(Recorded), _schema(model))
    assert any(p.startswith(found) for p in reported), reported


def test_nested_models_are_compared_field_by_field() -> None:
    """Inside a nested list of objects, an added optional field passes and a removed one is caught."""
    rsvp = CURRENT["event.rsvp.updated"]
    recorded = load()[rsvp.key]
    assert [] == problems(recorded, payload_schema(rsvp))
    nested = json.loads(json.dumps(recorded))
    preview = nested["$defs"]["AttendeePreview"]["properties"]
    grown = json.loads(json.dumps(nested))
    grown["$defs"]["AttendeePreview"]["properties"]["badge"] = {"type": "string"}
    assert [] == problems(recorded, grown)
    del preview["avatarUrl"]
    assert ["payload.attendeePreviews[].avatarUrl: removed"] == problems(recorded, nested)


def test_update_refuses_an_incompatible_change_and_records_an_additive_one(tmp_path: Path) -> None:
    """`--update` writes additions, refuses changes of a recorded version and unannounced retirements."""
    snapshot = tmp_path / "snapshot.json"
    recorded = load()
    key = "chat.message@1"
    grown = json.loads(json.dumps(recorded))
    del grown[key]["properties"]["text"]  # the snapshot lacks a field the model has: an addition
    snapshot.write_text(json.dumps(grown))
    assert [] == update(path=snapshot)
    assert recorded == json.loads(snapshot.read_text())

    changed = json.loads(json.dumps(recorded))
    changed[key]["properties"]["text"] = {"type": "integer"}  # the model's text is a string now: a change
    snapshot.write_text(json.dumps(changed))
    refused = update(path=snapshot)
    assert refused and all(r.startswith(f"{key}: payload.text") for r in refused), refused
    assert changed == json.loads(snapshot.read_text())  # nothing written

    retired = {**recorded, "chat.message@0": recorded[key]}
    snapshot.write_text(json.dumps(retired))
    assert ["chat.message@0: in the snapshot but not in the catalog"] == update(path=snapshot)
    assert [] == update(["chat.message@0"], path=snapshot)
