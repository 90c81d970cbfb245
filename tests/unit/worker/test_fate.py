"""The fate of a message, decided from its record, its policy, the fan-out's result and the clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from fanout import attributes
from fanout.catalog import Policy
from fanout.gateway.client import Outcome
from fanout.live.events import offline
from fanout.worker import fate
from fanout.worker.fate import DeadLetter, Deliver, Fate, Remainder
from fanout.worker.received import Received, parse
from fanout.worker.result import FanoutResult
from tests.corpus import valid

NOW = 1_800_000_000.0  # 2027-01-15
SENT = "2027-01-15T07:59:50.000Z"  # ten seconds before NOW
POLICY = Policy(max_age_s=60, rounds=3)


def message(body: str | None = None, round_: int | None = None, receives: int = 1) -> Received:
    attrs = {attributes.ROUND: attributes.number(round_)} if round_ is not None else {}
    raw = json.dumps(valid(sentAt=SENT)) if body is None else body
    return parse(
        {
            "ReceiptHandle": "r1",
            "MessageId": "m1",
            "Body": raw,
            "MessageAttributes": attrs,
            "Attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1800000000000"},
        }
    )


@dataclass
class Posts:
    """A fan-out result described by what each connection's posts came to."""

    ok: int = 0
    failed: tuple[str, ...] = ()  # retryable, still failing
    refused: tuple[str, ...] = ()  # 403
    unreachable: bool = False  # the failures were refused at the socket
    too_large: bool = False

    def result(self) -> FanoutResult:
        result = FanoutResult()
        result.outcomes[Outcome.OK] = self.ok
        result.outcomes[Outcome.UNREACHABLE if self.unreachable else Outcome.SERVER_ERROR] = len(self.failed)
        result.outcomes[Outcome.FORBIDDEN] = len(self.refused)
        result.failed = list(self.failed)
        result.refused = list(self.refused)
        result.users = {c: "u1" for c in (*self.failed, *self.refused)}
        if self.too_large:
            result.outcomes[Outcome.TOO_LARGE] += 1
            result.too_large = True
        return result


ON, OFF = True, False  # the type's run-time switch (fanout flags)
EXPIRED = json.dumps(valid(sentAt="2027-01-15T07:58:00.000Z"))

BEFORE = [
    ("deliverable", message(), ON, Deliver(budget_s=50.0, expires_at=NOW + 50)),
    ("expired by the type's age", message(EXPIRED), ON, Fate("expired")),
    (
        "expired by meta.expiresAt",
        message(json.dumps(valid(sentAt=SENT, meta={"expiresAt": "2027-01-15T07:59:59.000Z"}))),
        ON,
        Fate("expired"),
    ),
    ("invalid body", message("not json"), ON, Fate("invalid", dead_letters=(DeadLetter("not_json", ""),))),
    ("switched off", message(), OFF, Fate("disabled")),
    ("switched off and expired: the switch is named", message(EXPIRED), OFF, Fate("disabled")),
    ("switched off remainder", message(round_=2), OFF, Fate("disabled")),
    (
        "invalid and switched off: still dead-lettered",
        message("not json"),
        OFF,
        Fate("invalid", dead_letters=(DeadLetter("not_json", ""),)),
    ),
    (
        "payload that fails its model",
        message(json.dumps(valid(sentAt=SENT, payload={"notificationId": 7}))),
        ON,
        Fate("invalid", dead_letters=(DeadLetter("payload_schema", ""),)),
    ),
]


@pytest.mark.parametrize(("case", "msg", "enabled", "expected"), BEFORE, ids=[c[0] for c in BEFORE])
def test_before_the_fan_out(case: str, msg: Received, enabled: bool, expected: Fate | Deliver) -> None:
    """Invalid bodies are dead-lettered, switched-off types deleted as disabled, expired events dropped,
    the rest delivered within their expiry."""
    decided = fate.before(msg, POLICY, NOW, visibility_s=30, enabled=enabled)
    if isinstance(expected, Fate) and expected.dead_letters:
        assert isinstance(decided, Fate)
        assert expected.outcome == decided.outcome
        assert [d.reason for d in expected.dead_letters] == [d.reason for d in decided.dead_letters]
    else:
        assert expected == decided


AFTER = [
    ("delivered", 0, Posts(ok=3), Fate("delivered")),
    ("no connections", 0, Posts(), Fate("no_connections")),
    (
        "first remainder",
        0,
        Posts(ok=1, failed=("c1",)),
        Fate("partial", remainder=Remainder(("c1",), frozenset({"u1"}), round=1, delay_s=2)),
    ),
    (
        "growing delay",
        2,
        Posts(failed=("c1", "c2")),
        Fate("failed", remainder=Remainder(("c1", "c2"), frozenset({"u1"}), round=3, delay_s=8)),
    ),
    (
        "rounds exhausted",
        3,
        Posts(ok=1, failed=("c1",)),
        Fate(
            "partial",
            dead_letters=(DeadLetter("retries_exhausted", "1 connections", ("c1",), frozenset({"u1"})),),
        ),
    ),
    (
        "outage keeps the round",
        2,
        Posts(failed=("c1", "c2"), unreachable=True),
        Fate(
            "failed",
            remainder=Remainder(("c1", "c2"), frozenset({"u1"}), round=2, delay_s=fate.OUTAGE_DELAY_S),
            outage=True,
        ),
    ),
    (
        "403 beside retryable failures",
        0,
        Posts(ok=1, failed=("c1",), refused=("c2",)),
        Fate(
            "partial",
            remainder=Remainder(("c1",), frozenset({"u1"}), round=1, delay_s=2),
            dead_letters=(
                DeadLetter("forbidden", "management API answered 403", ("c2",), frozenset({"u1"})),
            ),
        ),
    ),
    (
        "413",
        0,
        Posts(ok=2, too_large=True),
        Fate("partial", dead_letters=(DeadLetter("too_large", "management API answered 413"),)),
    ),
]


@pytest.mark.parametrize(("case", "round_", "posts", "expected"), AFTER, ids=[c[0] for c in AFTER])
def test_after_the_fan_out(case: str, round_: int, posts: Posts, expected: Fate) -> None:
    """Each fan-out result maps to its delete, remainder (round, delay) and dead letters."""
    assert expected == fate.after(message(round_=round_), POLICY, posts.result())


def test_an_outage_remainder_and_replay_wait_the_given_delay() -> None:
    """In an outage the remainder and the released replay are visible after FANOUT_OUTAGE_DELAY_S."""
    down = Posts(failed=("c1",), unreachable=True).result()
    remainder = fate.after(message(), POLICY, down, outage_delay_s=1).remainder
    assert remainder is not None and 1 == remainder.delay_s
    assert 1 == fate.replayed(message(), down, max_receives=5, outage_delay_s=1).release_after_s


def test_a_policy_without_rounds_dead_letters_at_once() -> None:
    """A typing indicator (no rounds) that still fails is dead-lettered, not put back."""
    decided = fate.after(message(), Policy(max_age_s=5, rounds=0), Posts(failed=("c1",)).result())
    assert decided.remainder is None
    assert ["retries_exhausted"] == [d.reason for d in decided.dead_letters]


ERRORS = [
    ("handler error, first receive", 1, False, Fate("released", delete=False, release_after_s=2)),
    ("handler error, third receive", 3, False, Fate("released", delete=False, release_after_s=8)),
    (
        "handler error, last receive before SQS's redrive",
        4,
        False,
        Fate("failed", dead_letters=(DeadLetter("handler_error", "RuntimeError"),)),
    ),
    ("shutdown", 4, True, Fate("released", delete=False, release_after_s=0)),
]


@pytest.mark.parametrize(("case", "receives", "stopping", "expected"), ERRORS, ids=[c[0] for c in ERRORS])
def test_on_error(case: str, receives: int, stopping: bool, expected: Fate) -> None:
    """A failed fan-out is released with a growing backoff, dead-lettered on its last receive, and
    handed back at once on shutdown."""
    msg = message(receives=receives)
    assert expected == fate.on_error(msg, RuntimeError("boom"), stopping=stopping, max_receives=5)


def _target(**target: object) -> Received:
    return message(json.dumps(valid(sentAt=SENT, target=target)))


SPLITS = [
    ("small user list", _target(userIds=["a", "b"]), 0, 2, None),
    ("four bucket ranges", _target(broadcast=True), 4, 100, [(0, 256), (256, 512), (512, 768), (768, 1024)]),
    (
        "uneven ranges cover every bucket",
        _target(topics=["event:1"]),
        3,
        100,
        [(0, 341), (341, 682), (682, 1024)],
    ),
    ("long user list", _target(userIds=["a", "b", "c", "d", "e"]), 0, 2, [("a", "b"), ("c", "d"), ("e",)]),
    (
        "users beside topics are never sliced",
        _target(userIds=["a", "b", "c"], topics=["event:1"]),
        0,
        1,
        None,
    ),
    (
        "users beside single connections are never sliced",
        _target(userIds=["a", "b", "c"], connectionIds=["k1"]),
        0,
        1,
        None,
    ),
    ("a broadcast that fits", _target(broadcast=True), 1, 1, None),
]


@pytest.mark.parametrize(("case", "msg", "count", "per", "parts"), SPLITS, ids=[c[0] for c in SPLITS])
def test_split(
    case: str, msg: Received, count: int, per: int, parts: list[tuple[object, ...]] | None
) -> None:
    """Large audiences become bucket-range shards (the store's count) or user slices; small ones stay whole."""
    decided = fate.split(msg, count, users_per_shard=per)
    if parts is None:
        assert decided is None
        return
    assert decided is not None
    assert "sharded" == decided.outcome
    assert parts == [s.range if s.range is not None else s.users for s in decided.shards]


def test_a_part_is_never_split_again() -> None:
    """A shard or a remainder carries its own scope: splitting it again could deliver twice."""
    shard = parse(
        {
            "ReceiptHandle": "r",
            "Body": json.dumps(valid(sentAt=SENT, target={"broadcast": True})),
            "MessageAttributes": attributes.shard(0, 0, 512),
        }
    )
    assert fate.split(shard, 8, users_per_shard=1) is None


def test_a_replay_is_done_whatever_came_of_it_except_in_an_outage() -> None:
    """After a replay the message is deleted, even when a post failed (the client resumes again); when
    the management API refused every post at the socket, it is released to try again in a few seconds."""
    msg = message()
    assert Fate("delivered") == fate.replayed(msg, Posts(ok=3).result(), max_receives=5)
    assert Fate("partial") == fate.replayed(msg, Posts(ok=2, failed=("c1",)).result(), max_receives=5)
    down = fate.replayed(msg, Posts(failed=("c1",), unreachable=True).result(), max_receives=5)
    assert (False, fate.OUTAGE_DELAY_S, True) == (down.delete, down.release_after_s, down.outage)


def test_a_replay_unreachable_on_every_receive_is_dead_lettered_before_sqs_redrives_it() -> None:
    """A replay to a connection whose endpoint refuses every post (a record naming a dead endpoint) is
    released until its last receive before SQS's own redrive, and then dead-lettered with a reason rather
    than released again for SQS to move without one (or, with no redrive, released every 5 s forever)."""
    unreachable = Posts(failed=("c1",), unreachable=True).result()
    fates = [fate.replayed(message(receives=n), unreachable, max_receives=5) for n in (3, 4, 40)]
    assert [True, False, False] == [f.release_after_s is not None for f in fates]
    assert 2 * [("failed", ("retries_exhausted",))] == [
        (f.outcome, tuple(d.reason for d in f.dead_letters)) for f in fates[1:]
    ]


def test_a_check_message_received_before_its_sent_at_waits_until_then() -> None:
    """A scheduled check that arrived early (a FIFO queue takes no DelaySeconds) waits until its sentAt, in
    whole seconds; one that is due (or a fraction ahead: clocks differ), an ordinary event, and a time
    past SQS's longest delay do not wait."""
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def msg(ahead_s: float, check: str | None = "presence") -> Received:
        body = offline("u1", now, ["u2"], sent_at=now + timedelta(seconds=ahead_s))
        attrs = attributes.check(check) if check is not None else {}
        return parse({"ReceiptHandle": "r", "Body": body.to_json(), "MessageAttributes": attrs})

    at = now.timestamp()
    assert (6, 1) == (fate.due_in(msg(5.4), at), fate.due_in(msg(0.9), at))
    assert (0, 0, 0) == (fate.due_in(msg(-1), at), fate.due_in(msg(0.1), at), fate.due_in(msg(5, None), at))
    assert 0 == fate.due_in(msg(fate.MAX_DELAY_S + 60), at)


def test_a_remainder_received_before_its_delay_on_a_fifo_queue_waits_until_then() -> None:
    """A FIFO queue takes no DelaySeconds: a remainder received early waits out what is left of 2^round s
    since it was sent, and at least the outage delay (an outage's remainder keeps its round, whatever it
    is); on a standard queue, which applied the delay itself, and once it is due, it does not wait."""
    sent = datetime(2026, 1, 1, tzinfo=UTC).timestamp()

    def msg(round_: int, queue: str = "https://sqs/q.fifo") -> Received:
        m = {"ReceiptHandle": "r", "Body": json.dumps(valid()), "Attributes": {"SentTimestamp": str(int(sent * 1000))},
             "MessageAttributes": attributes.remainder(round_, ["c1"])}  # fmt: skip
        return parse(m, queue)

    assert (5, 7, 3) == (
        fate.due_in(msg(0), sent),
        fate.due_in(msg(3), sent + 1),
        fate.due_in(msg(0), sent + 2, 5),
    )
    assert (0, 0) == (fate.due_in(msg(0), sent + 5), fate.due_in(msg(0, "https://sqs/q"), sent))
    # rounds 1 and 2 (an outage's remainder keeps its round) wait the outage delay, however it is set
    assert (5, 5, 60, 60) == (
        fate.due_in(msg(1), sent),
        fate.due_in(msg(2), sent),
        fate.due_in(msg(1), sent, 60),
        fate.due_in(msg(3), sent, 60),
    )
