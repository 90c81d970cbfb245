"""What the relay sends to a FIFO queue for each outbox entry, without a queue."""

from __future__ import annotations

import json

from fanout.outbox.box import document
from fanout.outbox.relay import fifo_ids
from fanout.publish.direct import build_event
from tests.catalog_examples import payload


def test_an_entry_is_grouped_by_its_ordering_key_and_deduplicated_by_its_event_id() -> None:
    """A keyed event's group is its meta.orderingKey, an unkeyed one's its event id; the deduplication id
    is always the event id, so a batch sent again after a crash is dropped by SQS."""
    keyed = build_event("notification.new", payload=payload("notification.new"), user_ids=["u1"],
                        ordering_key="user:u1")  # fmt: skip
    alone = build_event("notification.new", payload=payload("notification.new"), user_ids=["u1"])
    assert ("user:u1", keyed.id) == fifo_ids(document(keyed))
    assert (alone.id, alone.id) == fifo_ids(document(alone))


def test_an_entry_written_by_hand_without_usable_meta_falls_back_to_its_event_id() -> None:
    """An entry from another language whose body has no meta, a meta that is not an object, or a body
    that is not JSON, is a group of its own."""
    for body in (
        '{"v":1}',
        json.dumps({"meta": ["x"]}),
        json.dumps({"meta": {"orderingKey": 7}}),
        "not json",
    ):
        assert ("evt_1", "evt_1") == fifo_ids({"_id": 1, "eventId": "evt_1", "body": body})
