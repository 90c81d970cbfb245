"""What the background publishers and the outbox relay share: the buffer, batches within SQS's limits,
the reading of a ``SendMessageBatch`` reply, and the backoff after a failed call.

Nothing here talks to SQS or takes a lock: the sync publisher guards a ``Buffer`` with its lock, the async
one relies on the event loop, and both decide with these functions.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
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


class Buffer:
    """Ordered events waiting to be sent, and the batches being sent. Not thread-safe; the publishers
    bound it with a semaphore of ``FANOUT_PUBLISH_BUFFER`` slots, one per event until its fate is known.

    ``fifo``: for a FIFO queue, a batch stops before an event whose message group is in a batch still in
    flight, so two calls that race never carry one group: SQS would order the group by which call it
    answered first, not by the order the events were published. The buffer goes out in order, so such an
    event at its head holds every other group back too (interleaved keys: about one call at a time)."""

    def __init__(self, linger_s: float, fifo: bool = False) -> None:
        self.linger_s = linger_s
        self.fifo = fifo
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        self.in_flight: dict[int, list[Entry]] = {}
        self.groups: Counter[str] = Counter()  # FIFO: the groups of the batches in flight

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: Entry) -> bool:
        """Buffer ``entry``; True when a sender should wake (first entry, or a full batch)."""
        self.entries.append(entry)
        self.bytes += entry.size
        n = len(self.entries)
        return n == 1 or n == MAX_ENTRIES or self.bytes >= MAX_BATCH_BYTES

    def due_in(self, now: float, hurry: bool) -> float | None:
        """Seconds until a batch should go: 0 when one is full (or ``hurry``), None when empty or when the
        next event waits for a batch of its FIFO group to end."""
        if not self.entries or self._held(self.entries[0]):
            return None
        if hurry or len(self.entries) >= MAX_ENTRIES or self.bytes >= MAX_BATCH_BYTES:
            return 0.0
        return max(0.0, self.entries[0].at + self.linger_s - now)

    def take(self) -> list[Entry]:
        """Take the next batch (in order, within SQS's limits) and count it as in flight."""
        batch: list[Entry] = []
        size = 0
        while self.entries and len(batch) < MAX_ENTRIES:
            n = self.entries[0].size
            if (batch and size + n > MAX_BATCH_BYTES) or self._held(self.entries[0]):
                break
            batch.append(self.entries.popleft())
            size += n
        self.bytes -= size
        self.in_flight[id(batch)] = batch
        if self.fifo:
            self.groups.update(e.group or e.id for e in batch)
        return batch

    def _held(self, entry: Entry) -> bool:
        """On a FIFO queue: a batch in flight carries ``entry``'s group, so ``entry`` waits for it to end."""
        return self.fifo and self.groups[entry.group or entry.id] > 0

    def done(self, batch: list[Entry], retry: Sequence[Entry] = ()) -> None:
        """The batch's call ended; ``retry`` goes back to the front, in order, ahead of newer events."""
        if self.in_flight.pop(id(batch), None) is not None and self.fifo:
            self.groups.subtract(e.group or e.id for e in batch)
            self.groups += Counter()  # drop the groups no batch carries any more
        for entry in reversed(retry):
            self.entries.appendleft(entry)
            self.bytes += entry.size

    def pending(self) -> int:
        """Events buffered or being sent."""
        return len(self.entries) + sum(len(b) for b in self.in_flight.values())

    def drain(self) -> list[Entry]:
        """Everything buffered or in flight, in order, removed from the buffer (for a last blocking send)."""
        out = [e for batch in self.in_flight.values() for e in batch] + list(self.entries)
        self.entries.clear()
        self.in_flight.clear()
        self.groups.clear()
        self.bytes = 0
        return out


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
