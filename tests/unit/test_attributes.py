"""Worker-owned message attributes: validated on receipt, written so every id fits under SQS's limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fanout import attributes
from fanout.attributes import CONNECTIONS, REPLAY, ROUND, Routing
from fanout.errors import InvalidMessage

S, N = attributes.string, attributes.number

GOOD: list[tuple[str, dict[str, Any] | None, Routing]] = [
    ("none", None, Routing()),
    ("other attributes only", {"trace": S("x")}, Routing()),
    ("a round", {ROUND: N(2)}, Routing(2)),
    ("a remainder", {ROUND: N(1), CONNECTIONS: S('["c1","c2=="]')}, Routing(1, ("c1", "c2=="))),
    ("duplicate ids collapse", {CONNECTIONS: S('["c1","c1"]')}, Routing(0, ("c1",))),
    ("a Number subtype", {ROUND: {"DataType": "Number.int", "StringValue": "3"}}, Routing(3)),
    ("a replay", {REPLAY: S('["evt_2","evt_1","evt_2"]')}, Routing(replay=("evt_2", "evt_1"))),
    (
        "a replay as written",
        attributes.replay(["evt_a", "evt:b.c-d"]),
        Routing(replay=("evt_a", "evt:b.c-d")),
    ),
]


@pytest.mark.parametrize(("case", "attrs", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_what_the_worker_writes_is_read_back(
    case: str, attrs: dict[str, Any] | None, expected: Routing
) -> None:
    """Attributes as the worker writes them give the round and the connection list."""
    assert expected == attributes.read(attrs)


BAD: list[tuple[str, dict[str, Any]]] = [
    ("round as a String", {ROUND: S("1")}),
    ("round negative", {ROUND: N(-1)}),
    ("round not whole", {ROUND: {"DataType": "Number", "StringValue": "1.5"}}),
    ("round huge", {ROUND: {"DataType": "Number", "StringValue": "9" * 400}}),
    ("round over the cap", {ROUND: N(101)}),
    ("round without value", {ROUND: {"DataType": "Number"}}),
    ("round not a mapping", {ROUND: "1"}),
    ("connections as a Number", {CONNECTIONS: N(1)}),
    ("connections not JSON", {CONNECTIONS: S("c1,c2")}),
    ("connections deeply nested", {CONNECTIONS: S("[" * 5000 + "]" * 5000)}),
    ("connections an object", {CONNECTIONS: S('{"c1": true}')}),
    ("connections empty", {CONNECTIONS: S("[]")}),
    ("connections with a number", {CONNECTIONS: S('["c1", 2]')}),
    ("connections with spaces", {CONNECTIONS: S('["c 1"]')}),
    ("connections with a newline", {CONNECTIONS: S('["c1\\n"]')}),
    ("too many connections", {CONNECTIONS: S(json.dumps([f"c{i}" for i in range(attributes.MAX_IDS + 1)]))}),
    ("replay empty", {REPLAY: S("[]")}),
    ("replay not a list of event ids", {REPLAY: S('["evt 1"]')}),
    ("replay as a Number", {REPLAY: N(1)}),
    ("replay too long", {REPLAY: S(json.dumps([f"e{i}" for i in range(attributes.MAX_REPLAY + 1)]))}),
]


@pytest.mark.parametrize(("case", "attrs"), BAD, ids=[b[0] for b in BAD])
def test_what_the_worker_would_not_write_is_a_bad_attribute(case: str, attrs: dict[str, Any]) -> None:
    """A worker-owned attribute set to anything the worker would not write makes the message invalid."""
    with pytest.raises(InvalidMessage) as caught:
        attributes.read(attrs)
    assert "bad_attribute" == caught.value.reason


def test_chunks_keep_every_id_and_fit_their_room() -> None:
    """Chunking loses no id, keeps their order, and each chunk's JSON fits the room given."""
    ids = [f"conn-{i:06d}==" for i in range(10_000)]
    chunks = attributes.chunks(ids, room=20_000)
    assert ids == [i for chunk in chunks for i in chunk]
    assert all(len(json.dumps(chunk, separators=(",", ":")).encode()) <= 20_000 for chunk in chunks)
    assert len(chunks) > 1


def test_size_counts_the_body_and_every_attribute_part() -> None:
    """The size SQS counts is the body plus each attribute's name, type and value, in bytes."""
    attrs = attributes.dead_letter("forbidden", "détail", ["c1"])
    expected = len("body€".encode()) + sum(
        len(k.encode()) + len(v["DataType"].encode()) + len(v["StringValue"].encode())
        for k, v in attrs.items()
    )
    assert expected == attributes.size("body€", attrs)


def test_reason_of_a_message_without_one() -> None:
    """A message SQS moved by itself has no reason attribute; it reads as receive_count_exceeded."""
    assert ("receive_count_exceeded", "") == attributes.reason_of({})
    assert ("too_large", "x") == attributes.reason_of(attributes.dead_letter("too_large", "x"))


@pytest.mark.parametrize(
    ("raw", "expected"), [("[0,1]", (0, 1)), ("[256,512]", (256, 512)), ("[0,1024]", (0, 1024))]
)
def test_a_shard_range_is_read(raw: str, expected: tuple[int, int]) -> None:
    """A shard's range is a pair of bucket numbers, lower first, within the store's buckets."""
    assert expected == attributes.read({attributes.SHARD: S(raw)}).shard


@pytest.mark.parametrize(
    "raw",
    ["[5,5]", "[6,5]", "[-1,3]", "[0,1025]", "[1]", "[1,2,3]", '["a","b"]', "[1.0,2]", "[true,2]", "[", "3"],
)
def test_a_bad_shard_range_is_a_bad_attribute(raw: str) -> None:
    """A shard attribute the worker would not write (reversed, empty, out of range, not ints) is invalid."""
    with pytest.raises(InvalidMessage, match="fanout-shard"):
        attributes.read({attributes.SHARD: S(raw)})


def test_a_replay_is_a_part_never_split_nor_kept_again() -> None:
    """A replay message counts as a worker-written part, like a remainder or a shard, and as an event the
    history holds already."""
    routing = attributes.read(attributes.replay(["evt_1"]))
    assert (True, True) == (routing.is_part, routing.is_kept)


TYPING_ID = "01JD7X5Q3C9V2B8N4M6K0HFG1R"  # a ULID, as chat.typing writes it


@pytest.mark.parametrize("value", ["presence", f"typing:{TYPING_ID}"])
def test_a_check_is_read_and_waits_like_a_part(value: str) -> None:
    """A presence or typing check is read back; like a remainder it is never split and its wait is not lag."""
    routing = attributes.read(attributes.check(value))
    assert (value, True, False) == (routing.check, routing.is_part, routing.is_kept)  # kept when it is posted


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Presence",
        "typing",
        "typing:",
        "typing:short",
        f"typing:{TYPING_ID}x",
        f"typing:{TYPING_ID.lower()}",
        "kick",
    ],
)
def test_a_check_the_lifecycle_would_not_write_is_a_bad_attribute(value: str) -> None:
    """Anything but presence or typing:<a ULID> is refused as bad_attribute."""
    with pytest.raises(InvalidMessage) as raised:
        attributes.read(attributes.check(value))
    assert "bad_attribute" == raised.value.reason


def test_a_check_applies_only_to_its_event_type() -> None:
    """A presence check names user.presence.updated and a typing check chat.typing.stopped; on another
    type (a forged attribute to hold back an ordinary event) it is a bad attribute."""
    attributes.check_fits(Routing(check="presence"), "user.presence.updated")
    attributes.check_fits(Routing(check=f"typing:{TYPING_ID}"), "chat.typing.stopped")
    attributes.check_fits(Routing(), "chat.message")
    for check, event_type in (("presence", "chat.message"), (f"typing:{TYPING_ID}", "chat.typing.started")):
        with pytest.raises(InvalidMessage) as raised:
            attributes.check_fits(Routing(check=check), event_type)
        assert "bad_attribute" == raised.value.reason


def test_a_check_on_a_replay_is_a_bad_attribute() -> None:
    """A replay carries kept events; a check beside it is a forgery, refused as bad_attribute."""
    with pytest.raises(InvalidMessage) as raised:
        attributes.read(attributes.replay(["evt_1"]) | attributes.check("presence"))
    assert "bad_attribute" == raised.value.reason


def test_a_dead_letter_moved_back_by_sqs_itself_reads_as_its_routing() -> None:
    """SQS's own redrive (the console's) keeps a dead letter's fanout-reason and fanout-detail: the worker
    reads the routing beside them and delivers, rather than dead-letter it again."""
    attrs = attributes.dead_letter("handler_error", "RuntimeError", ["c1"]) | attributes.check("presence")
    assert Routing(only=("c1",), check="presence") == attributes.read(attrs)
