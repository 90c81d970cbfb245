"""Batched SQS calls for the worker: deletes and visibility changes, ten at a time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fanout.logging import get_logger

log = get_logger("fanout.sqs")

RETRY_S = 1.0  # pause after a failed delete call before the next try


class Batcher:
    """Groups per-message SQS calls (delete, change visibility) into batches of ten."""

    def __init__(self, sqs: Any, queue_url: str, linger_s: float = 0.02) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._linger = linger_s
        self._deletes: list[str] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def delete(self, receipt: str) -> None:
        self._deletes.append(receipt)
        if len(self._deletes) in (1, 10):  # the first wakes the batcher; ten go at once
            self._wake.set()

    async def _run(self) -> None:
        # Stopped by a flag, not by cancel(): Python 3.11's wait_for can swallow a cancellation that
        # lands as its wait completes, and a cancelled delete call would lose its batch.
        while not self._closing:
            await self._wake.wait()  # an idle worker does not tick: nothing to delete, no wake-up
            self._wake.clear()
            if len(self._deletes) < 10 and not self._closing:
                with contextlib.suppress(TimeoutError):  # the rest of the receive joins the batch
                    await asyncio.wait_for(self._wake.wait(), self._linger)
                self._wake.clear()
            if not self._closing and not await self.flush():
                await asyncio.sleep(RETRY_S)
                self._wake.set()  # what failed is tried again

    async def flush(self) -> bool:
        """Delete what is pending, ten at a time. A failed call keeps its batch for the next flush
        (and returns False): the messages stay received, and a lost delete would mean a duplicate."""
        while self._deletes:
            batch, self._deletes = self._deletes[:10], self._deletes[10:]
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(batch)]
            try:
                reply = await self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
            except BaseException as exc:
                self._deletes[:0] = batch
                if not isinstance(exc, Exception):
                    raise
                log.warning("delete_failed", error=type(exc).__name__, pending=len(self._deletes))
                return False
            if failed := reply.get("Failed"):
                # An expired receipt: the message is visible again and will be handled twice.
                log.warning("delete_refused", count=len(failed), code=failed[0].get("Code"))
        return True

    @property
    def pending(self) -> int:
        """Deletes not sent yet."""
        return len(self._deletes)

    async def close(self) -> None:
        """Stop the background task after its current call, then delete what is still pending; a
        second call does nothing (the worker's drain closes it within a bound, its exit stack again)."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def set_visibility(self, receipts: list[str], seconds: int) -> None:
        """Extend (heartbeat) or release (0) the visibility of received messages."""
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": seconds}
                for i, r in enumerate(receipts[start : start + 10])
            ]
            await self._sqs.change_message_visibility_batch(QueueUrl=self._url, Entries=entries)
