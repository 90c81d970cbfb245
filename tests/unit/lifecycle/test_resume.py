"""The resume action with API Gateway's event shapes: what it checks, what it answers, and the one
replay message it puts on the events queue (real MongoDB and SQS servers)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from fanout import attributes, build_event
from fanout.config import Settings
from fanout.history import History
from fanout.lifecycle import Lifecycle
from fanout.store import ConnectionStore, mongo_client
from tests.catalog_examples import payload
from tests.conftest import Server, dev_settings
from tests.helpers import at_window_start
from tests.unit.lifecycle import events


def conversations(user_id: str, topic: str) -> bool:
    """A product check for these tests: u1 is in conversation c9."""
    return (user_id, topic) == ("u1", "conversation:c9")


@pytest.fixture
async def setup(
    mongo_server: Server, moto_server: Server, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Lifecycle, History, Settings]]:
    fields = getattr(request, "param", {})
    settings = dev_settings(moto_server, mongo_server, topic_policy=f"{__name__}:conversations", **fields)
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    sqs.create_queue(QueueName=settings.queue_name)
    sqs.close()
    client = mongo_client(settings)
    store = ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)
    lc = Lifecycle(store, settings)
    for cid, user in (("c1", "u1"), ("c2", "u2")):
        await store.put(cid, user, events.DOMAIN, "production", ttl_s=60)
    yield lc, History(store.database, settings), settings
    await lc.aclose()
    await client.drop_database(settings.mongo_db)
    await client.close()


async def _send(lc: Lifecycle, cid: str, frame: dict[str, Any]) -> dict[str, Any]:
    answer = await lc.handle(events.message(cid, json.dumps(frame), route="resume"))
    return dict(json.loads(answer["body"]))


def _queued(settings: Settings) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    sqs.close()
    return list(reply.get("Messages", []))


def _replayed(settings: Settings) -> list[str]:
    """The event ids of every replay message on the queue (taken off it)."""
    ids: list[str] = []
    for message in _queued(settings):
        ids += attributes.read(message["MessageAttributes"]).replay or ()
    return ids


async def _keep(history: History, user: str, key: str | None, seq: int | None) -> str:
    body = build_event(
        "notification.new", payload=payload("notification.new"), user_ids=[user], ordering_key=key, seq=seq
    )
    await history.record(body, time.time() + 3600)
    return body.id


@pytest.mark.parametrize(
    "frame",
    [
        {},
        {"positions": []},
        {"positions": {"not a topic": 1}},
        {"positions": {"user:u1": -1}},
        {"positions": {"user:u1": True}},
        {"positions": {"user:u1": 1.5}},
        {"positions": {"user:u1": 2**53}},
        {"positions": {f"event:{i}": 1 for i in range(101)}},
        {"lastEventId": "evt with spaces"},
        {"lastEventId": 7},
        {"lastEventId": "evt_1", "connectionIds": "c1"},
        {"lastEventId": "evt_1", "connectionIds": [""]},
        {"lastEventId": "evt_1", "connectionIds": [7]},
        {"lastEventId": "evt_1", "connectionIds": ["x" * 129]},
        {"lastEventId": "evt_1", "connectionIds": [f"c{i}" for i in range(11)]},
    ],
    ids=lambda f: json.dumps(f)[:40],
)
async def test_a_malformed_resume_is_answered_bad_resume(
    setup: tuple[Lifecycle, History, Settings], frame: dict[str, Any]
) -> None:
    """Positions that are not {kind:id: whole seq >= 0} (at most 100), an id that is not an event id, or
    connectionIds that are not at most 10 ids, are refused with bad_resume, echoing the frame's id."""
    lc, _, _ = setup
    answer = await _send(lc, "c1", {"action": "resume", "id": "r", **frame})
    assert ("system.error", "bad_resume", "r") == (
        answer["type"],
        answer["payload"]["code"],
        answer["replyTo"],
    )


@pytest.mark.parametrize("key", ["user:u2", "conversation:c8", "organization:7"])
async def test_streams_the_connection_may_not_follow_are_refused(
    setup: tuple[Lifecycle, History, Settings], key: str
) -> None:
    """Another user's stream, or a gated kind the product check refuses, is forbidden_stream, named."""
    lc, _, settings = setup
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 0, key: 0}})
    assert ("system.error", "forbidden_stream", key) == (
        answer["type"],
        answer["payload"]["code"],
        answer["payload"]["key"],
    )
    assert [] == _queued(settings)


async def test_missed_events_go_to_the_worker_as_one_replay_message_in_order(
    setup: tuple[Lifecycle, History, Settings],
) -> None:
    """The missed events of the user's stream and of an allowed conversation become one replay message:
    a system.replay body for the connection and their ids, in order, in fanout-replay."""
    lc, history, settings = setup
    mine = [await _keep(history, "u1", "user:u1", s) for s in (1, 2, 3)]
    chat = [await _keep(history, "u1", "conversation:c9", s) for s in (1, 2)]
    await _keep(history, "u2", "user:u2", 1)
    answer = await _send(
        lc, "c1", {"action": "resume", "id": "r", "positions": {"user:u1": 1, "conversation:c9": 0}}
    )
    assert ("resume.ok", {"replaying": 4}, "r") == (answer["type"], answer["payload"], answer["replyTo"])
    [message] = _queued(settings)
    routing = attributes.read(message["MessageAttributes"])
    assert (*mine[1:], *chat) == routing.replay
    body = json.loads(message["Body"])
    assert ("system.replay", ["c1"], []) == (
        body["type"],
        body["target"]["connectionIds"],
        body["target"]["userIds"],
    )


async def test_nothing_missed_answers_resume_ok_and_queues_nothing(
    setup: tuple[Lifecycle, History, Settings],
) -> None:
    """A client already at the latest kept event gets resume.ok with nothing replaying."""
    lc, history, settings = setup
    last = await _keep(history, "u1", "user:u1", 1)
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 1}, "lastEventId": last})
    assert ("resume.ok", {"replaying": 0}) == (answer["type"], answer["payload"])
    assert [] == _queued(settings)


@pytest.mark.parametrize("setup", [{"history_window_s": 0}], indirect=True)
async def test_without_a_history_every_resume_is_a_resync(setup: tuple[Lifecycle, History, Settings]) -> None:
    """With FANOUT_HISTORY_WINDOW_S=0 nothing is kept: a resume is told to refetch what it named."""
    lc, _, _ = setup
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 4}, "lastEventId": "evt_1"})
    assert ("system.resync", {"keys": {"user:u1": 4}, "events": True, "replaying": 0}) == (
        answer["type"],
        answer["payload"],
    )


async def test_another_users_event_id_is_answered_like_an_unknown_one(
    setup: tuple[Lifecycle, History, Settings],
) -> None:
    """A lastEventId kept for another user only is answered exactly as an id never kept: a resume does
    not tell whether someone else's event exists (before, resume.ok against system.resync)."""
    lc, history, _ = setup
    theirs = await _keep(history, "u2", None, None)
    foreign = await _send(lc, "c1", {"action": "resume", "lastEventId": theirs})
    unknown = await _send(lc, "c1", {"action": "resume", "lastEventId": "evt_never_kept"})
    assert ("system.resync", True) == (unknown["type"], unknown["payload"]["events"])
    assert (unknown["type"], unknown["payload"]) == (foreign["type"], foreign["payload"])


async def test_a_connection_gets_ten_resumes_a_window_and_then_rate_limited(
    setup: tuple[Lifecycle, History, Settings],
) -> None:
    """Twenty resumes in a row from one connection queue ten replays; the other ten are rate_limited
    (each replay may be FANOUT_HISTORY_MAX_REPLAY posts through the shared lanes)."""
    lc, history, settings = setup
    for seq in range(1, 6):
        await _keep(history, "u1", "user:u1", seq)
    await at_window_start(room_s=2)
    answers = [await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 0}}) for _ in range(20)]
    sqs = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    queued = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    sqs.close()
    codes = [a["payload"].get("code") for a in answers if a["type"] == "system.error"]
    assert ["rate_limited"] * 10 == codes
    assert "10" == queued["Attributes"]["ApproximateNumberOfMessages"]


@pytest.mark.parametrize(
    ("change", "skipped"),
    [
        ({"$unset": {"at": ""}}, True),
        ({"$set": {"at": "yesterday"}}, True),
        ({"$set": {"until": "tomorrow"}}, True),
        ({"$set": {"at": datetime(1, 1, 1, tzinfo=UTC)}}, None),
    ],
    ids=["no-at", "text-at", "text-until", "year-1-at"],
)
async def test_a_corrupt_history_document_is_skipped_not_a_500(
    setup: tuple[Lifecycle, History, Settings], change: dict[str, Any], skipped: bool | None
) -> None:
    """A kept document of the user's whose at is missing or no date, or whose until is no date, is
    skipped like one never kept, whether asked by a key's position or by a last event id naming it or an
    earlier one; an at of year 1 (a date) named as the last event id replays from there. Each answered 500
    (KeyError, TypeError, OverflowError) on every try, for as long as the document was kept."""
    lc, history, settings = setup
    ids = [await _keep(history, "u1", "user:u1", s) for s in (1, 2, 3)]
    await history._col.update_one({"_id": ids[1]}, change)
    frames = [
        {"positions": {"user:u1": 0}},
        {"positions": {"user:u1": 1}},
        {"lastEventId": ids[0]},
        {"lastEventId": ids[1]},
    ]
    for frame in frames:
        answer = await _send(lc, "c1", {"action": "resume", "id": "r", **frame})
        assert answer["type"] in ("resume.ok", "system.resync"), (frame, answer)
        replayed = _replayed(settings)
        assert skipped is None or skipped is (ids[1] not in replayed)


@pytest.mark.parametrize("bad_id", ["evt with spaces", "e" * 129, 7], ids=["spaces", "too-long", "number"])
async def test_a_kept_document_whose_id_is_no_event_id_is_left_out_of_the_replay(
    setup: tuple[Lifecycle, History, Settings], bad_id: object
) -> None:
    """A kept document of the user's whose _id is no event id (another writer's) is skipped: the replay
    message names the user's other events and the worker can read it. Before, its id went into
    fanout-replay, which the worker refuses whole (bad_attribute): the client was told resume.ok with
    the events replaying and got none of them."""
    lc, history, settings = setup
    ids = [await _keep(history, "u1", "user:u1", s) for s in (1, 3)]
    doc = await history._col.find_one({"_id": ids[0]})
    await history._col.insert_one(doc | {"_id": bad_id, "seq": 2})
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 0}})
    assert answer["type"] in ("resume.ok", "system.resync")
    assert ids == _replayed(settings)


@pytest.mark.parametrize(
    "seq", [True, 2**60, -5, 2.5], ids=["boolean", "beyond-2^53", "negative", "fraction"]
)
async def test_a_corrupt_sequence_counter_is_no_latest_seq(
    setup: tuple[Lifecycle, History, Settings], seq: object
) -> None:
    """A fanoutsequences counter that is no seq (a boolean, beyond 2^53-1, negative, a fraction) is no
    counter, as none can be allocated from it: a key with nothing kept is covered, and one whose kept
    events skip its position is resynced to the last seq kept. Before, a boolean or a huge counter was
    named as the key's seq in system.resync (true, 2^60), a value the clients drop: nothing refetched."""
    lc, history, _ = setup
    await history._sequences.insert_one({"_id": "user:u1", "seq": seq})
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 4}})
    assert ("resume.ok", {"replaying": 0}) == (answer["type"], answer["payload"])
    await _keep(history, "u1", "user:u1", 7)
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 4}})
    assert ("system.resync", {"user:u1": 7}) == (answer["type"], answer["payload"]["keys"])


async def test_a_kept_document_whose_type_is_no_event_type_is_skipped_at_once(
    setup: tuple[Lifecycle, History, Settings],
) -> None:
    """A kept document of the user's whose type is no event type (here 40,000 dotted parts) is skipped
    like one never kept. Before, the plan asked the policy of each prefix of it (a join per prefix,
    quadratic: 4.7 s for this one, minutes for one of a megabyte) on every resume, then replayed it."""
    lc, history, settings = setup
    ids = [await _keep(history, "u1", "user:u1", s) for s in (1, 2)]
    await history._col.update_one({"_id": ids[1]}, {"$set": {"type": "a." * 40_000}})
    started = time.monotonic()
    answer = await _send(lc, "c1", {"action": "resume", "positions": {"user:u1": 0}})
    assert time.monotonic() - started < 2
    assert ("resume.ok", {"replaying": 1}) == (answer["type"], answer["payload"])
    assert ids[:1] == _replayed(settings)
