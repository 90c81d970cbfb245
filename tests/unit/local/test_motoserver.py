"""The local stack's moto: a message sent during deletes is kept, and retention still applies.

moto's request threads are driven directly here, with a short GIL switch interval so that they
interleave often; without ``fanout.local.motoserver.patch`` the first test fails nearly every run.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.sqs.models import sqs_backends

from fanout.local import motoserver


@pytest.fixture
def backend() -> Iterator[Any]:
    motoserver.patch()
    backend = sqs_backends["000000000042"]["us-east-1"]
    backend.create_queue("q")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield backend
    sys.setswitchinterval(interval)
    backend.delete_queue("q")


def _run(*targets: Callable[[], None]) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_a_message_sent_during_deletes_is_kept(backend: Any) -> None:
    """A message sent during deletes is kept."""
    for i in range(300):
        backend.send_message("q", f"old-{i}")
    queue = backend.get_queue("q")
    handles = []
    for message in list(queue._messages):
        message.mark_received(600)
        handles.append(message.receipt_handle)
    sent = [f"new-{i}" for i in range(100)]

    def delete(part: int) -> Callable[[], None]:
        def run() -> None:
            for handle in handles[part::3]:
                backend.delete_message("q", handle)

        return run

    def send() -> None:
        for body in sent:
            backend.send_message("q", body)

    _run(send, delete(0), delete(1), delete(2))
    assert sorted(m.body for m in queue._messages) == sorted(sent)  # every new one kept, no old one back


def test_retention_still_drops_old_messages(backend: Any) -> None:
    """Retention still drops old messages."""
    backend.set_queue_attributes("q", {"MessageRetentionPeriod": "60"})
    backend.send_message("q", "kept")
    backend.send_message("q", "dropped")
    kept, dropped = backend.get_queue("q")._messages
    kept.sent_timestamp -= 30_000
    dropped.sent_timestamp -= 120_000
    assert [m.body for m in backend.receive_message("q", 10, 0, 30)] == ["kept"]


def test_a_fifo_group_in_flight_gives_out_nothing_more_to_concurrent_receives(backend: Any) -> None:
    """Two receives at once on a FIFO queue never both take a message of one group: the second gets the
    group's next message only after the first one's message is deleted."""
    backend.create_queue("f.fifo", FifoQueue="true")
    for i in range(6):
        backend.send_message("f.fifo", f"m{i}", group_id="g", deduplication_id=f"d{i}")
    got: list[list[Any]] = [[], []]

    def receive(slot: int) -> Callable[[], None]:
        def run() -> None:
            got[slot] = backend.receive_message("f.fifo", 1, 1, 30)

        return run

    try:
        _run(receive(0), receive(1))
        assert [["m0"]] == [[m.body for m in part] for part in got if part]
        [taken] = [m for part in got for m in part]
        assert [] == backend.receive_message("f.fifo", 10, 0, 30)
        backend.delete_message("f.fifo", taken.receipt_handle)
        assert ["m1", "m2"] == [m.body for m in backend.receive_message("f.fifo", 2, 0, 30)]
    finally:
        backend.delete_queue("f.fifo")


def test_sends_keep_fifo_deduplication_and_the_counts(backend: Any) -> None:
    """A send reads only the deduplication attribute: FIFO content deduplication still drops a repeat,
    and the queue's attributes still count its messages."""
    backend.create_queue("q.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    try:
        backend.send_message("q.fifo", "same", group_id="g")
        backend.send_message("q.fifo", "same", group_id="g")
        backend.send_message("q.fifo", "other", group_id="g")
        assert ["same", "other"] == [m.body for m in backend.get_queue("q.fifo")._messages]
        for body in ("a", "b", "c"):
            backend.send_message("q", body)
        attributes = backend.get_queue("q").attributes
        assert 3 == attributes["ApproximateNumberOfMessages"]
        assert "QueueArn" in attributes
    finally:
        backend.delete_queue("q.fifo")
