"""Batching, the reading of SendMessageBatch replies, the buffer and the backoff, without a queue."""

from __future__ import annotations

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


def test_on_a_fifo_queue_a_batch_waits_while_its_group_is_in_flight() -> None:
    """On a FIFO queue two batches in flight never share a message group: the next batch stops before
    the first event whose group a batch in flight carries, and goes once that batch's call ended. On a
    standard queue the batches go side by side."""

    def keyed(n: int, group: str) -> Entry:
        e = entry(n)
        e.group = group
        return e

    fifo = Buffer(linger_s=0.0, fifo=True)
    for i, group in enumerate(["a"] * 10 + ["b", "a", "c"]):
        fifo.add(keyed(i, group))
    first = fifo.take()
    assert list(range(10)) == [int(e.id[4:]) for e in first]
    second = fifo.take()
    assert [10] == [int(e.id[4:]) for e in second]  # b; then a's next event waits for the first batch
    assert fifo.due_in(0.0, hurry=True) is None
    fifo.done(first)
    assert 0.0 == fifo.due_in(0.0, hurry=True)
    assert [11, 12] == [int(e.id[4:]) for e in fifo.take()]
    assert fifo.due_in(0.0, hurry=True) is None  # empty
    plain = Buffer(linger_s=0.0)
    for i, group in enumerate(["a"] * 12):
        plain.add(keyed(i, group))
    assert (10, 2) == (len(plain.take()), len(plain.take()))


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
