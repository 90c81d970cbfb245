"""Batching, the reading of SendMessageBatch replies, the buffer and the backoff, without a queue."""

from __future__ import annotations

import random
import time

import pytest
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from fanout.errors import InvalidMessage
from fanout.publish.batch import (
    MAX_BATCH_BYTES,
    Backoff,
    Buffer,
    Entry,
    batch_refused,
    outcome,
    refused,
    request,
    request_for,
    single,
    split,
)
from fanout.publish.direct import build_event
from fanout.publish.metrics import metrics_for


def entry(n: int, size: int = 100, at: float = 0.0) -> Entry:
    return Entry(f"evt_{n}", "notification.new", "x" * size, size, at)


def test_split_keeps_order_within_ten_entries_and_256_kib() -> None:
    """Batches hold at most 10 entries and 256 KiB, in order; a body over the limit goes alone."""
    small = [entry(i) for i in range(23)]
    assert [10, 10, 3] == [len(b) for b in split(small)]
    assert small == [e for b in split(small) for e in b]
    big = [entry(0, 100_000), entry(1, 100_000), entry(2, 100_000), entry(3, 300_000), entry(4, 10)]
    batches = split(big)
    assert [[0, 1], [2], [3], [4]] == [[int(e.id[4:]) for e in b] for b in batches]
    assert all(sum(e.size for e in b) <= MAX_BATCH_BYTES for b in batches if len(b) > 1)


def test_entry_of_an_event_carries_its_body_and_a_bounded_label() -> None:
    """An entry is the event's queue body, its size in bytes, and the catalogued type (or ``other``)."""
    body = build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1", "t": "é"})
    e = Entry.of(body)
    assert (body.id, "notification.new", body.to_json()) == (e.id, e.label, e.body)
    assert len(body.to_json().encode()) == e.size
    assert "other" == Entry.of(build_event("chat.unheard.of", user_ids=["u1"])).label


def test_an_event_over_1_mib_is_refused_before_it_is_buffered() -> None:
    """A body SQS would refuse raises InvalidMessage in the caller's path."""
    huge = build_event(
        "notification.new",
        user_ids=[f"user-{i:07d}" for i in range(90_000)],
        payload={"notificationId": "n1"},
    )
    with pytest.raises(InvalidMessage, match="too_large"):
        Entry.of(huge)


def test_request_numbers_entries_by_position() -> None:
    """Each entry's Id is its index in the batch, so the reply maps back without a lookup table."""
    assert [{"Id": "0", "MessageBody": "a"}, {"Id": "1", "MessageBody": "b"}] == request(["a", "b"])


def test_on_a_fifo_queue_each_entry_names_its_group_and_deduplication_id() -> None:
    """A FIFO queue's entries carry the ordering key (else the event id) as group and the event id as
    deduplication id; a standard queue's carry neither."""
    keyed = Entry.of(build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n1"},
                                 ordering_key="user:u1"))  # fmt: skip
    alone = Entry.of(build_event("notification.new", user_ids=["u1"], payload={"notificationId": "n2"}))
    fifo = request_for("https://sqs.example/1/q.fifo", [keyed, alone])
    assert [("user:u1", keyed.id), (alone.id, alone.id)] == [
        (e["MessageGroupId"], e["MessageDeduplicationId"]) for e in fifo
    ]
    assert {"MessageGroupId": "user:u1", "MessageDeduplicationId": keyed.id} == single("u/q.fifo", keyed)
    assert [{"Id": "0", "MessageBody": keyed.body}] == request_for("https://sqs.example/1/q", [keyed])
    assert {} == single("https://sqs.example/1/q", keyed)


def test_outcome_retries_server_faults_and_unanswered_entries_and_refuses_sender_faults() -> None:
    """A sender fault for the content is refused for good; a server fault, a sender fault that is the
    queue's (a KMS key), or an entry the reply omits, is retried."""
    batch = [entry(i) for i in range(6)]
    reply = {
        "Successful": [{"Id": "0"}, {"Id": "3"}, {"Id": "3"}, {"Id": "99"}],
        "Failed": [
            {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents"},
            {"Id": "2", "SenderFault": False, "Code": "InternalError"},
            {"Id": "5", "SenderFault": True, "Code": "KMS.AccessDeniedException"},
            {"Id": "x", "SenderFault": True},
        ],
    }
    result = outcome(batch, reply)
    assert [batch[0], batch[3]] == result.sent
    assert [(batch[1], "InvalidMessageContents")] == result.refused
    assert [batch[2], batch[5], batch[4]] == result.retry
    assert "InternalError" == result.why


def error(code: str, status: int = 400) -> ClientError:
    """The error botocore raises for SQS's answer ``code`` with HTTP ``status``."""
    reply = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(reply, "SendMessage")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "final", "split"),
    [
        ("InvalidParameterValue", 400, True, True),  # a body over the queue's maximum size
        ("InvalidMessageContents", 400, True, True),  # characters SQS refuses
        ("AWS.SimpleQueueService.NonExistentQueue", 400, False, False),
        ("QueueDoesNotExist", 400, False, False),
        ("KMS.AccessDeniedException", 400, False, False),
        ("KmsAccessDenied", 400, False, False),
        ("AccessDenied", 403, False, False),
        ("RequestThrottled", 400, False, False),
        ("KMS.ThrottlingException", 400, False, False),
        ("InternalError", 500, False, False),
        ("AWS.SimpleQueueService.BatchRequestTooLong", 400, False, True),
        ("BatchRequestTooLong", 400, False, True),
        ("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400, False, True),
        ("BatchEntryIdsNotDistinct", 400, False, True),
        ("AWS.SimpleQueueService.InvalidBatchEntryId", 400, False, True),
    ],
)
def test_only_a_content_refusal_is_final_and_a_refused_batch_goes_one_by_one(
    code: str, status: int, final: bool, split: bool
) -> None:
    """A message is refused for good only for its content; a missing queue, a KMS key or grant, access
    or throttling is retried; a batch refused for its shape or one body is sent again entry by entry."""
    assert (final, split) == (refused(error(code, status)), batch_refused(error(code, status)))


def test_buffer_lingers_until_a_batch_is_full_or_the_oldest_is_due() -> None:
    """A lone event waits for the linger; ten events, or a flush, make a batch due at once."""
    buf = Buffer(linger_s=0.005)
    assert buf.due_in(0.0, hurry=False) is None
    assert buf.add(entry(0, at=1.0))  # the first entry wakes a sender, which then lingers
    assert 0.004 < buf.due_in(1.001, hurry=False) <= 0.005  # type: ignore[operator]
    assert 0.0 == buf.due_in(1.001, hurry=True)
    assert 0.0 == buf.due_in(1.006, hurry=False)
    woke = [buf.add(entry(i, at=1.0)) for i in range(1, 10)]
    assert [False] * 8 + [True] == woke
    assert 0.0 == buf.due_in(1.001, hurry=False)


def test_buffer_puts_retried_entries_back_ahead_of_newer_ones() -> None:
    """Entries to retry return to the front in their order; in-flight batches count as pending."""
    buf = Buffer(linger_s=0.0)
    for i in range(12):
        buf.add(entry(i))
    batch = buf.take()
    assert list(range(10)) == [int(e.id[4:]) for e in batch]
    assert 12 == buf.pending()
    buf.done(batch, retry=[batch[3], batch[7]])
    assert [3, 7, 10, 11] == [int(e.id[4:]) for e in buf.entries]
    assert 4 == buf.pending()
    assert 4 * 100 == buf.bytes


def keyed(n: int, group: str, size: int = 100, at: float = 0.0) -> Entry:
    e = entry(n, size, at)
    e.group = group
    return e


def ids(batch: list[Entry]) -> list[int]:
    return [int(e.id[4:]) for e in batch]


def test_on_a_fifo_queue_a_batch_skips_the_groups_in_flight() -> None:
    """On a FIFO queue two batches in flight never share a message group: the next batch skips the events
    whose group a batch in flight carries and takes the later events of other groups, and the skipped
    ones go once that batch's call ended. On a standard queue the batches go side by side."""
    fifo = Buffer(linger_s=0.0, fifo=True)
    for i, group in enumerate(["a"] * 10 + ["b", "a", "c", "a", "b"]):
        fifo.add(keyed(i, group))
    first = fifo.take()
    assert list(range(10)) == ids(first)
    second = fifo.take()
    assert [10, 12, 14] == ids(second)  # b, c and b's next: a's events wait for the first batch
    assert fifo.due_in(0.0, hurry=True) is None
    assert [] == fifo.take()
    assert (2, 15) == (len(fifo), fifo.pending())
    fifo.done(first)
    assert 0.0 == fifo.due_in(0.0, hurry=True)
    assert [11, 13] == ids(fifo.take())
    fifo.done(second)
    assert fifo.due_in(0.0, hurry=True) is None  # empty
    plain = Buffer(linger_s=0.0)
    for i, group in enumerate(["a"] * 12):
        plain.add(keyed(i, group))
    assert (10, 2) == (len(plain.take()), len(plain.take()))


def test_a_fifo_batch_keeps_to_ten_entries_and_256_kib_and_stops_at_the_first_that_does_not_fit() -> None:
    """A FIFO batch takes the events that may go in order up to 10 entries or 256 KiB, and stops at the
    first that does not fit rather than passing it for a smaller later one."""
    fifo = Buffer(linger_s=0.0, fifo=True)
    for i in range(12):
        fifo.add(keyed(i, f"g{i % 3}"))
    assert list(range(10)) == ids(fifo.take())
    fifo = Buffer(linger_s=0.0, fifo=True)
    for i, (group, size) in enumerate([("a", 10), ("b", 100_000), ("c", 100_000), ("d", 100_000), ("e", 10)]):
        fifo.add(keyed(i, group, size))
    assert [0, 1, 2] == ids(fifo.take())
    assert [3, 4] == ids(fifo.take())
    fifo.add(keyed(5, "f", 300_000))  # over 256 KiB: a batch of its own (SendMessage)
    fifo.add(keyed(6, "g", 10))
    assert ([5], [6]) == (ids(fifo.take()), ids(fifo.take()))


def test_on_a_fifo_queue_retried_entries_go_first_in_their_group_and_a_group_keeps_its_order() -> None:
    """Entries to retry return to the front of their group, ahead of its later events, and the group's
    events leave in publish order while other groups go around it."""
    fifo = Buffer(linger_s=0.0, fifo=True)
    for i, group in enumerate(["a", "b", "a", "b", "c", "a"]):
        fifo.add(keyed(i, group, 100_000))  # two to a batch
    first = fifo.take()
    assert [0, 1] == ids(first)
    beside = fifo.take()
    assert [4] == ids(beside)  # a and b are in flight: only c may go
    fifo.done(first, retry=[first[0]])  # a's first event failed, b's went
    taken: list[int] = []
    while batch := fifo.take():
        taken += ids(batch)
        fifo.done(batch, retry=[e for e in batch if e.id == "evt_2" and taken.count(2) == 1])
    assert [0, 2, 2, 3, 5] == taken  # a: 0, 2 (failed), 2 again, 5; b's 3 in its turn
    fifo.done(beside)
    assert 0 == fifo.pending()


def test_on_a_fifo_queue_due_in_counts_only_the_events_that_may_go() -> None:
    """While the oldest event's group is in flight, a later event of another group makes a batch due
    after the linger from its own buffering, at once when ten such events wait; with every buffered
    group in flight nothing is due. A first such event wakes a sender."""
    fifo = Buffer(linger_s=0.005, fifo=True)
    assert fifo.add(keyed(0, "a", at=1.0))
    held = fifo.take()
    assert not fifo.add(keyed(1, "a", at=1.0))  # held: no sender can take it
    assert fifo.due_in(1.0, hurry=True) is None
    assert fifo.add(keyed(2, "b", at=2.0))  # the first event that may go
    assert 0.004 < fifo.due_in(2.001, hurry=False) <= 0.005  # type: ignore[operator]
    assert 0.0 == fifo.due_in(2.001, hurry=True)
    assert 0.0 == fifo.due_in(2.006, hurry=False)
    woke = [fifo.add(keyed(i, f"k{i}", at=2.0)) for i in range(3, 12)]
    assert [False] * 8 + [True] == woke  # ten events that may go: a full batch
    assert 0.0 == fifo.due_in(2.001, hurry=False)
    assert [2, *range(3, 12)] == ids(fifo.take())
    fifo.done(held)  # a's next event, buffered at 1.0, is the oldest that may go
    assert 0.0 == fifo.due_in(1.005, hurry=False)
    assert 0.001 == pytest.approx(fifo.due_in(1.004, hurry=False))


def test_on_a_fifo_queue_drain_keeps_each_groups_order() -> None:
    """A last blocking send gets the batches in flight, then what is buffered in publish order."""
    fifo = Buffer(linger_s=0.0, fifo=True)
    for i, group in enumerate(["a", "a", "b", "a", "c"]):
        fifo.add(keyed(i, group, 100_000))
    assert ([0, 1], [2, 4]) == (ids(fifo.take()), ids(fifo.take()))
    assert [0, 1, 2, 4, 3] == ids(fifo.drain())  # a: 0, 1, 3
    assert (0, 0) == (fifo.pending(), len(fifo))


@pytest.mark.parametrize("seed", range(20))
def test_a_fifo_buffer_takes_what_a_scan_of_the_events_in_order_would_take(seed: int) -> None:
    """Against a plain scan of the buffered events in publish order, through random adds, takes and
    calls that end with some entries to retry: each batch is the longest run of the events whose group
    is not in flight that fits SQS's limits, due_in and the counts agree, and no two batches in flight
    share a group."""
    rng = random.Random(seed)
    fifo = Buffer(linger_s=0.01, fifo=True)
    model: list[Entry] = []  # buffered, in publish order (a retried entry at its own place)
    flying: list[list[Entry]] = []
    n = 0
    for _ in range(400):
        op = rng.random()
        if op < 0.5:
            size = rng.choice([100, 100, 100, 60_000, 200_000, 300_000])
            e = keyed(n, rng.choice(["hot", "hot", *"abcdefghijklmnop"]), size, at=n * 0.001)
            n += 1
            fifo.add(e)
            model.append(e)
        elif op < 0.8 or not flying:
            busy = {e.group for b in flying for e in b}
            free = [e for e in model if e.group not in busy]
            want: list[Entry] = []
            for e in free:
                if len(want) == 10 or (want and sum(x.size for x in want) + e.size > MAX_BATCH_BYTES):
                    break
                want.append(e)
            now = n * 0.001
            due = max(0.0, free[0].at + 0.01 - now) if free else None
            if len(free) >= 10 or sum(e.size for e in free) >= MAX_BATCH_BYTES:
                due = 0.0
            assert due == fifo.due_in(now, hurry=False)
            batch = fifo.take()
            assert ids(want) == ids(batch)
            model = [e for e in model if e not in batch]
            if batch:
                flying.append(batch)
        else:
            batch = flying.pop(rng.randrange(len(flying)))
            retry = [e for e in batch if rng.random() < 0.3]
            fifo.done(batch, retry)
            model = sorted(model + retry, key=lambda e: int(e.id[4:]))
        assert (len(model), len(model) + sum(map(len, flying))) == (len(fifo), fifo.pending())
        assert sum(e.size for e in model) == fifo.bytes


def test_drain_returns_in_flight_and_buffered_entries() -> None:
    """A last blocking send gets the batches in flight (their fate unknown) and everything buffered."""
    buf = Buffer(linger_s=0.0)
    for i in range(15):
        buf.add(entry(i))
    buf.take()
    assert list(range(15)) == sorted(int(e.id[4:]) for e in buf.drain())
    assert 0 == buf.pending()


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    """Failures pause 0.1 s doubling up to 2 s (jittered down to half); a success ends the run."""
    backoff = Backoff()
    delays = [backoff.failed() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert 1.0 <= delays[-1] <= 2.0
    assert backoff.until > time.monotonic()
    assert backoff.ok()
    assert not backoff.ok()
    assert 0.0 == backoff.until


def test_publishers_on_one_registry_share_their_metrics() -> None:
    """Two publishers may use one registry: the metrics are defined once and shared."""
    registry = CollectorRegistry()
    assert metrics_for(registry) is metrics_for(registry)
    assert metrics_for(registry) is not metrics_for(CollectorRegistry())
