"""What the background publishers and the outbox relay share: the buffer, batches within SQS's limits,
the reading of a ``SendMessageBatch`` reply, and the backoff after a failed call.

Nothing here talks to SQS or takes a lock: the sync publisher guards a ``Buffer`` with its lock, the async
one relies on the event loop, and both decide with these functions.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fanout import queues
from fanout.catalog import metric_label
from fanout.envelope import MAX_BODY_BYTES, QueueBody
from fanout.errors import InvalidMessage

MAX_ENTRIES = 10  # SendMessageBatch: at most 10 entries ...
MAX_BATCH_BYTES = 256 * 1024  # ... and 256 KiB of bodies per call
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 2.0


@dataclass(slots=True)
class Entry:
    """One event waiting to be sent: its id, metric label and serialized body."""

    id: str
    label: str
    body: str
    size: int
    at: float = 0.0  # monotonic time it was buffered
    group: str = ""  # its FIFO message group: the ordering key, else the event id
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)  # MessageAttributes (a redrive's)
    seq: int = 0  # FIFO: its place in the buffer's order, given by ``Buffer.add``

    @classmethod
    def of(cls, body: QueueBody) -> Entry:
        """The entry of a built event; ``InvalidMessage("too_large")`` over SQS's 1 MiB, in the caller's
        path rather than as a refusal after ``publish`` has returned."""
        text = body.to_json()
        size = len(text.encode())
        if size > MAX_BODY_BYTES:
            raise InvalidMessage("too_large", f"body of {size} bytes is over {MAX_BODY_BYTES}")
        group = body.meta.ordering_key or body.id
        return cls(body.id, metric_label(body.type), text, size, time.monotonic(), group)


def split(entries: Sequence[Any], size_of: Any = lambda e: e.size) -> list[list[Any]]:
    """Cut ``entries`` in order into batches of at most 10 entries and 256 KiB; an entry over 256 KiB
    forms a batch of its own (sent with ``SendMessage``)."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    size = 0
    for entry in entries:
        n = size_of(entry)
        if current and (len(current) == MAX_ENTRIES or size + n > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
    if current:
        batches.append(current)
    return batches


def request(bodies: Iterable[str], fifo: Iterable[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """``SendMessageBatch`` entries; each ``Id`` is the entry's index in the batch. ``fifo``: for a FIFO
    queue, each entry's (message group, deduplication id)."""
    entries: list[dict[str, Any]] = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    if fifo is not None:
        for entry, (group, dedup) in zip(entries, fifo, strict=True):
            entry["MessageGroupId"] = group
            entry["MessageDeduplicationId"] = dedup
    return entries


def request_for(url: str, batch: Sequence[Entry]) -> list[dict[str, Any]]:
    """The ``SendMessageBatch`` entries of buffered events; on a FIFO queue each names its group (the
    ordering key, else the event id) and its deduplication id (the event id), as ``Publisher`` does."""
    fifo = [(e.group or e.id, e.id) for e in batch] if queues.is_fifo(url) else None
    entries = request((e.body for e in batch), fifo)
    for entry, e in zip(entries, batch, strict=True):
        if e.attrs:
            entry["MessageAttributes"] = e.attrs
    return entries


def single(url: str, entry: Entry) -> dict[str, Any]:
    """The FIFO fields and attributes of a lone ``SendMessage`` (a body over 256 KiB); nothing more on a
    standard queue."""
    fields: dict[str, Any] = dict(queues.fifo_fields(url, entry.group or entry.id, entry.id))
    if entry.attrs:
        fields["MessageAttributes"] = entry.attrs
    return fields


#: SQS's answers to a message it will never take, whoever sends it and however often: too large for the
#: queue, or text it refuses. Every other 400 (a missing queue, a KMS key or grant, access, throttling) is
#: the queue's or the moment's: the message is sent again.
CONTENT_REFUSED = frozenset({"InvalidParameterValue", "InvalidMessageContents"})
#: SQS's answers to a ``SendMessageBatch`` it refuses as a request, whatever its messages (the query
#: protocol's spelling and the JSON one's): its entries can still go one at a time.
BATCH_REFUSED = frozenset(
    prefix + code
    for prefix in ("", "AWS.SimpleQueueService.")
    for code in (
        "BatchRequestTooLong",
        "TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct",
        "InvalidBatchEntryId",
    )
)


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (at most 64 characters), ``""`` when it has none."""
    return str(exc.response.get("Error", {}).get("Code", ""))[:64]


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def refused(exc: ClientError) -> bool:
    """SQS refused the message for its content (a 400 of ``CONTENT_REFUSED``): sending it again cannot
    help. Any other failure, 400s included (``AWS.SimpleQueueService.NonExistentQueue``, ``KMS.*``,
    ``AccessDenied``), is worth sending again once the queue is fixed."""
    return _status(exc) == 400 and error_code(exc) in CONTENT_REFUSED


def batch_refused(exc: ClientError) -> bool:
    """SQS refused a ``SendMessageBatch`` whole, for its shape or for one message's content: sent one
    by one, the good entries go and only a bad one is refused."""
    return _status(exc) == 400 and (error_code(exc) in BATCH_REFUSED or error_code(exc) in CONTENT_REFUSED)


@dataclass
class Result:
    """A batch call's reply, entry by entry: sent, worth retrying, or refused for good (with the code).
    ``why``: the first retried entry's code, for the log."""

    sent: list[Any] = field(default_factory=list)
    retry: list[Any] = field(default_factory=list)
    refused: list[tuple[Any, str]] = field(default_factory=list)
    why: str = ""

    def add(self, other: Result) -> None:
        """Count ``other``'s entries in this result too."""
        self.sent += other.sent
        self.retry += other.retry
        self.refused += other.refused
        self.why = self.why or other.why


def outcome(batch: Sequence[Any], reply: dict[str, Any]) -> Result:
    """Read a ``SendMessageBatch`` reply. An entry SQS failed as the sender's fault for its content
    (``CONTENT_REFUSED``) is refused; any other failure (throttling, an internal error, a KMS key the
    queue cannot use) is retried. An entry the reply does not mention is retried too: SQS answers for
    every entry, so that reply is not to be trusted."""
    result = Result()
    done: set[int] = set()
    for ok in reply.get("Successful", []):
        index = _index(ok.get("Id"), len(batch))
        if index is not None and index not in done:
            done.add(index)
            result.sent.append(batch[index])
    for failed in reply.get("Failed", []):
        index = _index(failed.get("Id"), len(batch))
        if index is None or index in done:
            continue
        done.add(index)
        code = str(failed.get("Code") or "refused")[:64]
        if failed.get("SenderFault") and code in CONTENT_REFUSED:
            result.refused.append((batch[index], code))
        else:
            result.retry.append(batch[index])
            result.why = result.why or code
    missing = [entry for i, entry in enumerate(batch) if i not in done]
    if missing:
        result.retry += missing
        result.why = result.why or "missing from the reply"
    return result


def _index(value: Any, size: int) -> int | None:
    try:
        index = int(value)
    except (TypeError, ValueError):
        return None
    return index if 0 <= index < size else None


class _Group:
    """A FIFO buffer's events of one message group, in order; ``held`` while a batch in flight carries it."""

    __slots__ = ("bytes", "entries", "held")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        self.held = False


class Buffer:
    """Ordered events waiting to be sent, and the batches being sent. Not thread-safe; the publishers
    bound it with a semaphore of ``FANOUT_PUBLISH_BUFFER`` slots, one per event until its fate is known.

    ``fifo``: for a FIFO queue, two calls in flight never carry one group: SQS would order the group by
    which call it answered first, not by the order the events were published. A batch takes the oldest
    events whose group no batch in flight carries, skipping the others, so a group in flight holds back
    only its own later events. The events wait in one queue per group, the groups that may go in a heap
    by their oldest event: a batch costs a few heap operations, however many events are held."""

    def __init__(self, linger_s: float, fifo: bool = False) -> None:
        self.linger_s = linger_s
        self.fifo = fifo  # fixed once events are buffered: a FIFO buffer keeps them by group
        self.entries: deque[Entry] = deque()  # not FIFO: the events, in order
        self.bytes = 0
        self.in_flight: dict[int, list[Entry]] = {}
        # FIFO: the groups buffered or in flight; a heap of (seq of its oldest event, group) of each group
        # that may go; the number and bytes of the events that may go; the number buffered; the next seq.
        self.groups: dict[str, _Group] = {}
        self._ready: list[tuple[int, str]] = []
        self._ready_n = 0
        self._ready_bytes = 0
        self._n = 0
        self._seq = 0

    def __len__(self) -> int:
        return self._n if self.fifo else len(self.entries)

    def add(self, entry: Entry) -> bool:
        """Buffer ``entry``; True when a sender should wake (first entry, or a full batch; on a FIFO queue,
        of the events that may go)."""
        if self.fifo:
            return self._add(entry)
        self.entries.append(entry)
        self.bytes += entry.size
        n = len(self.entries)
        return n == 1 or n == MAX_ENTRIES or self.bytes >= MAX_BATCH_BYTES

    def due_in(self, now: float, hurry: bool) -> float | None:
        """Seconds until a batch should go: 0 when one is full (or ``hurry``), None when empty. On a FIFO
        queue only the events whose group is not in flight count, the linger from the oldest of them;
        None when there is none."""
        if self.fifo:
            if not self._ready_n:
                return None
            if hurry or self._ready_n >= MAX_ENTRIES or self._ready_bytes >= MAX_BATCH_BYTES:
                return 0.0
            return max(0.0, self._oldest().at + self.linger_s - now)
        if not self.entries:
            return None
        if hurry or len(self.entries) >= MAX_ENTRIES or self.bytes >= MAX_BATCH_BYTES:
            return 0.0
        return max(0.0, self.entries[0].at + self.linger_s - now)

    def take(self) -> list[Entry]:
        """Take the next batch (in order, within SQS's limits) and count it as in flight. On a FIFO
        queue: the oldest events whose group is not in flight, in order; their groups are then held."""
        if self.fifo:
            return self._take()
        batch: list[Entry] = []
        size = 0
        while self.entries and len(batch) < MAX_ENTRIES:
            n = self.entries[0].size
            if batch and size + n > MAX_BATCH_BYTES:
                break
            batch.append(self.entries.popleft())
            size += n
        self.bytes -= size
        self.in_flight[id(batch)] = batch
        return batch

    def done(self, batch: list[Entry], retry: Sequence[Entry] = ()) -> None:
        """The batch's call ended; ``retry`` goes back to the front, in order, ahead of newer events (on
        a FIFO queue, to the front of each group, and the batch's groups may go again)."""
        if self.fifo:
            self._done(batch, retry)
            return
        self.in_flight.pop(id(batch), None)
        for entry in reversed(retry):
            self.entries.appendleft(entry)
            self.bytes += entry.size

    def pending(self) -> int:
        """Events buffered or being sent."""
        return len(self) + sum(len(b) for b in self.in_flight.values())

    def drain(self) -> list[Entry]:
        """Everything buffered or in flight, in order, removed from the buffer (for a last blocking send)."""
        buffered = list(self.entries)
        if self.fifo:
            buffered = sorted((e for g in self.groups.values() for e in g.entries), key=lambda e: e.seq)
        out = [e for batch in self.in_flight.values() for e in batch] + buffered
        self.entries.clear()
        self.in_flight.clear()
        self.groups.clear()
        self._ready.clear()
        self._ready_n = self._ready_bytes = self._n = self.bytes = 0
        return out

    # ---- FIFO: one queue per group

    def _add(self, entry: Entry) -> bool:
        key = entry.group or entry.id
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group()
        entry.seq = self._seq
        self._seq += 1
        group.entries.append(entry)
        group.bytes += entry.size
        self._n += 1
        self.bytes += entry.size
        if group.held:
            return False
        if len(group.entries) == 1:
            heapq.heappush(self._ready, (entry.seq, key))
        self._ready_n += 1
        self._ready_bytes += entry.size
        n = self._ready_n
        return n == 1 or n == MAX_ENTRIES or self._ready_bytes >= MAX_BATCH_BYTES

    def _oldest(self) -> Entry:
        """The oldest event that may go (there is one); stale heap items on top are dropped."""
        ready, groups = self._ready, self.groups
        while True:
            seq, key = ready[0]
            group = groups.get(key)
            if group is not None and not group.held and group.entries and group.entries[0].seq == seq:
                return group.entries[0]
            heapq.heappop(ready)

    def _take(self) -> list[Entry]:
        batch: list[Entry] = []
        size = 0
        taken: dict[str, _Group] = {}
        ready, groups = self._ready, self.groups
        nexts: list[tuple[int, str]] = []  # the next events of the groups taken: they may join, in turn
        while len(batch) < MAX_ENTRIES:
            heap = nexts if nexts and (not ready or nexts[0] < ready[0]) else ready
            if not heap:
                break
            seq, key = heap[0]
            group = groups.get(key)
            if group is None or group.held or not group.entries or group.entries[0].seq != seq:
                heapq.heappop(heap)  # stale (a retry after a drain moved the group's head)
                continue
            entry = group.entries[0]
            if batch and size + entry.size > MAX_BATCH_BYTES:
                break
            group.entries.popleft()
            group.bytes -= entry.size
            batch.append(entry)
            size += entry.size
            taken[key] = group
            heapq.heappop(heap)
            if group.entries:
                heapq.heappush(nexts, (group.entries[0].seq, key))
        for group in taken.values():  # held: their later events wait for this batch
            group.held = True
            self._ready_n -= len(group.entries)
            self._ready_bytes -= group.bytes
        self._ready_n -= len(batch)
        self._ready_bytes -= size
        self._n -= len(batch)
        self.bytes -= size
        self.in_flight[id(batch)] = batch
        return batch

    def _done(self, batch: list[Entry], retry: Sequence[Entry]) -> None:
        ours = self.in_flight.pop(id(batch), None) is not None  # not after a drain took it
        for entry in reversed(retry):  # ahead of the group's later events (all newer: it was held)
            key = entry.group or entry.id
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = _Group()
            group.entries.appendleft(entry)
            group.bytes += entry.size
            self._n += 1
            self.bytes += entry.size
            if not group.held:  # its batch was drained: nothing holds it
                heapq.heappush(self._ready, (entry.seq, key))
                self._ready_n += 1
                self._ready_bytes += entry.size
        if not ours:
            return
        for key in {e.group or e.id for e in batch}:
            group = self.groups[key]
            group.held = False
            if group.entries:
                heapq.heappush(self._ready, (group.entries[0].seq, key))
                self._ready_n += len(group.entries)
                self._ready_bytes += group.bytes
            else:
                del self.groups[key]


class Backoff:
    """One pause shared by every sender after a failed call: 0.1 s doubling to 2 s, with jitter."""

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0  # monotonic

    def failed(self) -> float:
        self.failures += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        self.until = time.monotonic() + delay
        return delay

    def ok(self) -> bool:
        """Reset; True when this ends a run of failures."""
        recovered = self.failures > 0
        self.failures = 0
        self.until = 0.0
        return recovered
