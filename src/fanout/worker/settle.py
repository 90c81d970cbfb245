"""Carries out a message's ``Fate``: the SQS calls, the metrics and the tally, in one place.

Order matters for "nothing lost": the remainder and the dead letters are written before the message is
deleted, so a crash in between means a duplicate, never a loss.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fanout import attributes, queues
from fanout.catalog import OTHER, metric_label
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.worker.fate import DeadLetter, Fate, Remainder, Shard
from fanout.worker.received import Received
from fanout.worker.sqs import Batcher

log = get_logger("fanout.worker")

#: Bytes kept free for the connection-list attribute's name and type when chunking ids.
_SLACK = 256
#: At most this much per SendMessageBatch call (SQS allows 1 MiB per batch).
_BATCH_BYTES = 900 * 1024
#: Outcomes that delete a message undelivered, each tallied by its name.
_DROPPED = frozenset({"expired", "disabled", "conflated", "superseded"})


@dataclass
class Tally:
    """One line at shutdown: what this process did."""

    received: int = 0
    delivered: int = 0
    gone: int = 0
    retried: int = 0
    remainders: int = 0
    dead_lettered: int = 0
    expired: int = 0
    disabled: int = 0
    conflated: int = 0
    superseded: int = 0
    released: int = 0
    shards: int = 0


class Settler:
    """Applies fates: one instance per worker process."""

    def __init__(
        self,
        sqs: Any,
        batchers: dict[str, Batcher],
        dlq_url: str,
        metrics: Metrics,
        *,
        queue_url: str,
        bulk_url: str | None = None,
    ) -> None:
        self._sqs = sqs
        self._batchers = batchers  # per queue URL
        self._queue = queue_url
        self._bulk = bulk_url or queue_url  # where shards go
        self._dlq = dlq_url
        self._metrics = metrics
        self._events = functools.cache(metrics.events.labels)  # labels() is a dozen Python calls
        self.tally = Tally()

    def _home(self, msg: Received) -> str:
        return msg.queue_url or self._queue

    async def apply(self, msg: Received, fate: Fate) -> None:
        """Write the remainder and dead letters, then delete or release the message. Its outcome is
        counted once they are written: when SQS refuses one, the worker settles it another way."""
        label = metric_label(msg.body.type) if msg.body is not None else OTHER
        if fate.shards:
            await self._shards(msg, fate.shards)
            self._metrics.shards.labels(label).inc(len(fate.shards))
            self.tally.shards += len(fate.shards)
        if fate.remainder is not None:
            await self._remainder(msg, fate.remainder)
            self._metrics.remainders.labels(label).inc()
            self.tally.remainders += 1
        for letter in fate.dead_letters:
            await self._dead_letter(msg, letter)
        self._events(label, fate.outcome).inc()
        if fate.outcome in _DROPPED:
            setattr(self.tally, fate.outcome, getattr(self.tally, fate.outcome) + 1)
        if fate.release_after_s is not None:
            await self.release(self._home(msg), [msg.receipt], fate.release_after_s)
        elif fate.delete:
            self._batchers[self._home(msg)].delete(msg.receipt)

    async def release(self, queue_url: str, receipts: Sequence[str], after_s: int = 0) -> None:
        """Make messages of a queue visible again now (shutdown) or after a backoff (a failed attempt)."""
        try:
            await self._batchers[queue_url].set_visibility(list(receipts), after_s)
            self.tally.released += len(receipts)
        except Exception as exc:  # they come back on their own when their visibility runs out
            log.warning("release_failed", error=type(exc).__name__)

    def _body_for(self, msg: Received, users: frozenset[str]) -> str:
        """A remainder's body: the event with its user list narrowed to the users still to reach."""
        assert msg.body is not None
        return msg.body.for_users(set(users)).to_json()

    async def _remainder(self, msg: Received, remainder: Remainder) -> None:
        assert msg.body is not None
        body = self._body_for(msg, remainder.users)
        base = attributes.remainder(remainder.round, [])
        room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
        url = self._home(msg)
        for i, ids in enumerate(attributes.chunks(remainder.ids, room)):
            # A FIFO queue takes no per-message delay: the remainder comes back at once and is held until
            # its delay has passed (fate.due_in), in a group of its own so that it holds up no later event
            # of its key. Its deduplication id is the received message's, so a crash before the delete
            # writes it once.
            part = f"{msg.message_id}-r{i}"
            fifo: dict[str, Any] = queues.fifo_fields(url, part, part)
            await self._sqs.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageAttributes=attributes.remainder(remainder.round, ids),
                **(fifo or {"DelaySeconds": remainder.delay_s}),
            )

    async def _shards(self, msg: Received, shards: Sequence[Shard]) -> None:
        """Put every shard back on the queue, ten (and at most ``_BATCH_BYTES``) per call; a call that
        fails in part is retried once for what failed, then the whole message fails (and is released)."""
        assert msg.body is not None
        whole = msg.body.to_json()
        entries: list[dict[str, Any]] = []
        for i, part in enumerate(shards):
            if part.range is not None:
                body, attrs = whole, attributes.shard(msg.round, *part.range)
            else:
                body, attrs = self._body_for(msg, frozenset(part.users or ())), {}
            part_id = f"{msg.message_id}-s{i}"  # on a FIFO bulk queue, every part is a group of its own
            fifo = queues.fifo_fields(self._bulk, part_id, part_id)
            entries.append({"Id": str(i), "MessageBody": body, "MessageAttributes": attrs, **fifo})
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            cost = attributes.size(entry["MessageBody"], entry["MessageAttributes"])
            if batch and (len(batch) == 10 or size + cost > _BATCH_BYTES):
                await self._send_batch(batch)
                batch, size = [], 0
            batch.append(entry)
            size += cost
        if batch:
            await self._send_batch(batch)

    async def _send_batch(self, entries: list[dict[str, Any]]) -> None:
        for _ in range(2):
            reply = await self._sqs.send_message_batch(QueueUrl=self._bulk, Entries=entries)
            failed = {f["Id"] for f in reply.get("Failed", [])}
            if not failed:
                return
            entries = [e for e in entries if e["Id"] in failed]
        raise RuntimeError(f"{len(entries)} shards could not be queued")

    def _dlq_fifo(self, msg: Received, letter: DeadLetter, part: int) -> dict[str, str]:
        return queues.fifo_fields(
            self._dlq, msg.message_id or "dead", f"{msg.message_id}-{letter.reason}-{part}"
        )

    async def _dead_letter(self, msg: Received, letter: DeadLetter) -> None:
        """Copy the message to the DLQ with its reason; every connection id is kept, in as many
        messages as it takes, and each message stays under SQS's size limit."""
        # Redriven, a check must be confirmed again and a replay stay one: without them a presence check
        # would announce "offline" unconditionally, hours later, and a replay post its own body.
        routing = msg.routing
        keep = attributes.check(routing.check) if routing.check is not None else {}
        keep |= attributes.replay(routing.replay) if routing.replay is not None else {}
        base = attributes.dead_letter(letter.reason, letter.detail) | keep
        if routing.shard is not None and not letter.ids:  # redriven, it must stay that shard
            base |= attributes.shard(0, *routing.shard)
        body = msg.raw
        if letter.ids:
            room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
            if room < attributes.MAX_MESSAGE_BYTES // 4 and msg.body is not None:
                body = self._body_for(msg, letter.users)  # the original is too big to carry the ids
                room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
            for i, ids in enumerate(attributes.chunks(letter.ids, room)):
                attrs = attributes.dead_letter(letter.reason, letter.detail, ids) | keep
                fifo = self._dlq_fifo(msg, letter, i)
                await self._sqs.send_message(
                    QueueUrl=self._dlq, MessageBody=body, MessageAttributes=attrs, **fifo
                )
        else:
            over = attributes.size(body, base) - attributes.MAX_MESSAGE_BYTES
            if over > 0:  # an invalid body at SQS's limit: keep what fits, and say so
                body = body.encode()[: len(body.encode()) - over - _SLACK].decode(errors="ignore")
                base = attributes.dead_letter(letter.reason, f"{letter.detail} (body truncated)") | keep
            fifo = self._dlq_fifo(msg, letter, 0)
            await self._sqs.send_message(
                QueueUrl=self._dlq, MessageBody=body or "-", MessageAttributes=base, **fifo
            )
        self._metrics.dead_lettered.labels(letter.reason).inc()
        self.tally.dead_lettered += 1
