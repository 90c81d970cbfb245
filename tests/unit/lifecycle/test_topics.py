"""Topic subscriptions: authorized per kind, capped per connection in total, acknowledged with the list."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from fanout.lifecycle import Lifecycle
from fanout.lifecycle.topics import MAX_TOPICS
from fanout.store import ConnectionStore, mongo_client
from tests.conftest import Server, dev_settings
from tests.unit.lifecycle import events

CALLS: list[tuple[str, str]] = []


def members_only(user_id: str, topic: str) -> bool:
    """A product check for tests: organization 7 admits u1; conversations are refused."""
    CALLS.append((user_id, topic))
    return topic == "organization:7" and user_id == "u1"


ANSWERED: set[tuple[str, str]] = set()


def revoked_after_first_answer(user_id: str, topic: str) -> bool:
    """A product check whose access is revoked right after its first answer (a removal racing the
    subscribe): it allows each (user, topic) once, then refuses."""
    first = (user_id, topic) not in ANSWERED
    ANSWERED.add((user_id, topic))
    return first


async def async_check(user_id: str, topic: str) -> bool:
    """An asynchronous product check, which may ask another service."""
    await asyncio.sleep(0)
    return topic.endswith(":open")


@pytest.fixture
async def lifecycle(mongo_server: Server, request: pytest.FixtureRequest) -> AsyncIterator[Lifecycle]:
    policy = getattr(request, "param", None)
    settings = dev_settings(mongo=mongo_server, topic_policy=policy)
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    await store.ensure_indexes()
    lc = Lifecycle(store, settings)
    for cid, user in (("c1", "u1"), ("c2", "u2")):
        await store.put(cid, user, events.DOMAIN, "production", ttl_s=60)
    yield lc
    await client.drop_database(settings.mongo_db)
    await client.close()


async def _send(lc: Lifecycle, cid: str, frame: dict[str, Any]) -> dict[str, Any]:
    answer = await lc.handle(events.message(cid, json.dumps(frame)))
    return dict(json.loads(answer["body"]))


async def test_own_user_topic_and_public_kinds_are_allowed(lifecycle: Lifecycle) -> None:
    """A client may follow user:<own id> and event:<id>; the answer lists what the connection holds."""
    answer = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["user:u1", "event:42"]})
    assert ("subscribe.ok", ["user:u1", "event:42"]) == (answer["type"], answer["payload"]["topics"])


async def test_a_refusal_names_the_topic_and_stores_nothing(lifecycle: Lifecycle) -> None:
    """Subscribing to another user's topic is refused with the topic named; the allowed ones are not kept."""
    answer = await _send(lifecycle, "c2", {"action": "subscribe", "topics": ["event:1", "user:u1"]})
    assert ("system.error", "forbidden_topic", "user:u1") == (
        answer["type"],
        answer["payload"]["code"],
        answer["payload"]["topic"],
    )
    assert "topics" not in (await lifecycle.services.store.get("c2") or {})


@pytest.mark.parametrize("lifecycle", ["tests.unit.lifecycle.test_topics:members_only"], indirect=True)
async def test_a_refusal_names_every_refused_topic_of_the_frame(lifecycle: Lifecycle) -> None:
    """A frame with several refused topics is answered once, naming them all in the frame's order, so a
    client drops them together; ``topic`` still names the first, for clients that read only it."""
    frame = {"action": "subscribe", "topics": ["conversation:9", "event:1", "user:u2", "organization:7"]}
    answer = await _send(lifecycle, "c1", frame)
    assert ("forbidden_topic", "conversation:9", ["conversation:9", "user:u2"]) == (
        answer["payload"]["code"],
        answer["payload"]["topic"],
        answer["payload"]["topics"],
    )
    frame["topics"] = ["event:1", "organization:7"]  # sent again without them: taken
    assert ["event:1", "organization:7"] == (await _send(lifecycle, "c1", frame))["payload"]["topics"]


async def test_the_cap_holds_over_many_frames(lifecycle: Lifecycle) -> None:
    """Frames of a few topics each cannot together exceed the per-connection total."""
    for start in range(0, MAX_TOPICS, 10):
        answer = await _send(
            lifecycle,
            "c1",
            {"action": "subscribe", "topics": [f"event:{i}" for i in range(start, start + 10)]},
        )
        assert "subscribe.ok" == answer["type"]
    over = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["event:one-more"]})
    assert ("system.error", "too_many_topics") == (over["type"], over["payload"]["code"])
    again = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["event:0"]})  # already held: fine
    assert MAX_TOPICS == len(again["payload"]["topics"])
    assert MAX_TOPICS == len((await lifecycle.services.store.get("c1") or {})["topics"])


async def test_concurrent_frames_cannot_pass_the_cap_together(lifecycle: Lifecycle) -> None:
    """Twenty concurrent frames of ten new topics each leave at most the cap stored."""
    frames = [
        _send(lifecycle, "c1", {"action": "subscribe", "topics": [f"event:{k}-{i}" for i in range(10)]})
        for k in range(20)
    ]
    answers = await asyncio.gather(*frames)
    stored = (await lifecycle.services.store.get("c1") or {})["topics"]
    assert len(stored) <= MAX_TOPICS
    assert 10 * sum(a["type"] == "subscribe.ok" for a in answers) == len(stored)


async def test_unsubscribe_answers_the_remaining_list(lifecycle: Lifecycle) -> None:
    """unsubscribe removes topics and acknowledges with what is left."""
    await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["event:1", "event:2"]})
    answer = await _send(lifecycle, "c1", {"action": "unsubscribe", "topics": ["event:1"], "id": "u-1"})
    assert ("unsubscribe.ok", ["event:2"], "u-1") == (
        answer["type"],
        answer["payload"]["topics"],
        answer["replyTo"],
    )


MALFORMED_TOPICS = [
    ("one string", "event:1", []),
    ("null", None, []),
    ("an object", {"event:1": True}, []),
    ("a number", 7, []),
    ("a list of other values", [datetime.now(UTC), ObjectId(), b"event:1", 1, None, "event:1"], ["event:1"]),
]


@pytest.mark.parametrize(("case", "topics", "held"), MALFORMED_TOPICS, ids=[m[0] for m in MALFORMED_TOPICS])
async def test_a_record_whose_topics_another_writer_left_malformed_subscribes_and_unsubscribes(
    lifecycle: Lifecycle, case: str, topics: Any, held: list[str]
) -> None:
    """``topics`` that is not a list holds nothing, as every other read of the record takes it: a
    subscribe or unsubscribe answers with what the record then holds (strings only, never a value that is
    not a topic), never internal_error."""
    records = lifecycle.services.store._col
    for action, then in (("unsubscribe", held), ("subscribe", [*held, "event:2"])):
        await records.update_one({"connectionId": "c1"}, {"$set": {"topics": topics}})
        answer = await _send(lifecycle, "c1", {"action": action, "topics": ["event:2"]})
        assert (f"{action}.ok", then) == (answer["type"], answer["payload"]["topics"])


@pytest.mark.parametrize("lifecycle", ["tests.unit.lifecycle.test_topics:members_only"], indirect=True)
async def test_gated_kinds_ask_the_product_check(lifecycle: Lifecycle) -> None:
    """Organization and conversation topics go to the configured check; own and public kinds do not."""
    CALLS.clear()
    ok = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["organization:7", "event:3"]})
    refused = await _send(lifecycle, "c2", {"action": "subscribe", "topics": ["organization:7"]})
    assert "subscribe.ok" == ok["type"]
    assert "forbidden_topic" == refused["payload"]["code"]
    # u1's allowed topic is asked again once stored (a revocation may fall in between); u2's refused one not
    assert [("u1", "organization:7"), ("u1", "organization:7"), ("u2", "organization:7")] == CALLS


@pytest.mark.parametrize(
    "lifecycle", ["tests.unit.lifecycle.test_topics:revoked_after_first_answer"], indirect=True
)
async def test_access_revoked_while_the_subscribe_is_stored_is_taken_back(lifecycle: Lifecycle) -> None:
    """The product's check allows organization:7, then the product revokes it before the topic is
    stored (the worker's revocation ran first): the second answer refuses it, and the record keeps only
    what was allowed (the public topic of the same frame, and nothing gated)."""
    ANSWERED.clear()
    answer = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["organization:7", "event:3"]})
    assert ("system.error", "forbidden_topic", "organization:7", ["organization:7"]) == (
        answer["type"],
        answer["payload"]["code"],
        answer["payload"]["topic"],
        answer["payload"]["topics"],
    )
    assert ["event:3"] == (await lifecycle.services.store.get("c1") or {})["topics"]


@pytest.mark.parametrize("lifecycle", ["tests.unit.lifecycle.test_topics:async_check"], indirect=True)
async def test_an_asynchronous_check_is_awaited(lifecycle: Lifecycle) -> None:
    """A check returning an awaitable is awaited; only True allows."""
    ok = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["conversation:open"]})
    refused = await _send(lifecycle, "c1", {"action": "subscribe", "topics": ["conversation:c9"]})
    assert ("subscribe.ok", "forbidden_topic") == (ok["type"], refused["payload"]["code"])


def test_an_unloadable_check_is_a_config_error(mongo_server: Server) -> None:
    """A FANOUT_TOPIC_POLICY that names nothing stops the lifecycle from starting."""
    from fanout.errors import ConfigError

    settings = dev_settings(mongo=mongo_server, topic_policy=f"no_such_module_{secrets.token_hex(2)}:check")
    with pytest.raises(ConfigError, match="FANOUT_TOPIC_POLICY"):
        Lifecycle(ConnectionStore.from_client(mongo_client(settings), "x", "y"), settings)
