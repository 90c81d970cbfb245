"""Carries out a message's ``Fate``: the SQS calls, the metrics and the tally, in one place.

Order matters for "nothing lost": the remainder and the dead letters are written before the message is
deleted, so a crash in between means a duplicate, never a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fanout import attributes
from fanout.catalog import OTHER, metric_label
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.worker.fate import DeadLetter, Fate, Remainder
from fanout.worker.received import Received
from fanout.worker.sqs import Batcher

log = get_logger("fanout.worker")

#: Bytes kept free for the connection-list attribute's name and type when chunking ids.
_SLACK = 256


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
    released: int = 0


class Settler:
    """Applies fates: one instance per worker process."""

    def __init__(self, sqs: Any, queue_url: str, dlq_url: str, batcher: Batcher, metrics: Metrics) -> None:
        self._sqs = sqs
        self._queue = queue_url
        self._dlq = dlq_url
        self._batcher = batcher
        self._metrics = metrics
        self.tally = Tally()

    async def apply(self, msg: Received, fate: Fate) -> None:
        """Write the remainder and dead letters, then delete or release the message."""
        label = metric_label(msg.body.type) if msg.body is not None else OTHER
        self._metrics.events.labels(label, fate.outcome).inc()
        if fate.outcome == "expired":
            self.tally.expired += 1
        elif fate.outcome == "disabled":
            self.tally.disabled += 1
        if fate.remainder is not None:
            await self._remainder(msg, fate.remainder)
            self._metrics.remainders.labels(label).inc()
            self.tally.remainders += 1
        for letter in fate.dead_letters:
            await self._dead_letter(msg, letter)
        if fate.release_after_s is not None:
            await self.release([msg.receipt], fate.release_after_s)
        elif fate.delete:
            self._batcher.delete(msg.receipt)

    async def release(self, receipts: Sequence[str], after_s: int = 0) -> None:
        """Make messages visible again now (shutdown) or after a backoff (a failed attempt)."""
        try:
            await self._batcher.set_visibility(list(receipts), after_s)
            self.tally.released += len(receipts)
        except Exception as exc:  # they come back on their own when their visibility runs out
            log.warning("release_failed", error=type(exc).__name__)

    def _body_for(self, msg: Received, users: frozenset[str]) -> str:
        """A remainder's body: the event with its user list narrowed to the users still to reach."""
        assert msg.body is not None
        return msg.body.for_users(set(users)).to_json()

    async def _remainder(self, msg: Received, remainder: Remainder) -> None:
        body = self._body_for(msg, remainder.users)
        base = attributes.remainder(remainder.round, [])
        room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
        for ids in attributes.chunks(remainder.ids, room):
            await self._sqs.send_message(
                QueueUrl=self._queue,
                MessageBody=body,
                DelaySeconds=remainder.delay_s,
                MessageAttributes=attributes.remainder(remainder.round, ids),
            )

    async def _dead_letter(self, msg: Received, letter: DeadLetter) -> None:
        """Copy the message to the DLQ with its reason; every connection id is kept, in as many
        messages as it takes, and each message stays under SQS's size limit."""
        base = attributes.dead_letter(letter.reason, letter.detail)
        body = msg.raw
        if letter.ids:
            room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
            if room < attributes.MAX_MESSAGE_BYTES // 4 and msg.body is not None:
                body = self._body_for(msg, letter.users)  # the original is too big to carry the ids
                room = attributes.MAX_MESSAGE_BYTES - attributes.size(body, base) - _SLACK
            for ids in attributes.chunks(letter.ids, room):
                attrs = attributes.dead_letter(letter.reason, letter.detail, ids)
                await self._sqs.send_message(QueueUrl=self._dlq, MessageBody=body, MessageAttributes=attrs)
        else:
            over = attributes.size(body, base) - attributes.MAX_MESSAGE_BYTES
            if over > 0:  # an invalid body at SQS's limit: keep what fits, and say so
                body = body.encode()[: len(body.encode()) - over - _SLACK].decode(errors="ignore")
                base = attributes.dead_letter(letter.reason, f"{letter.detail} (body truncated)")
            await self._sqs.send_message(QueueUrl=self._dlq, MessageBody=body or "-", MessageAttributes=base)
        self._metrics.dead_lettered.labels(letter.reason).inc()
        self.tally.dead_lettered += 1
