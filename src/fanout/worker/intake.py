"""Where a worker's messages come in: the queues it polls, their long polls, and the heartbeat that keeps
every held message invisible to the rest of the pool until it is settled.

A poller receives only what a free slot of its line can start and hands the batch to the worker, which
starts, decides and settles each message (``consumer.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fanout.config import Settings
from fanout.health import Readiness
from fanout.logging import get_logger
from fanout.worker import received
from fanout.worker.received import Received
from fanout.worker.sqs import Batcher
from fanout.worker.sqs_client import SqsClient
from fanout.worker.stopping import cancel_all

log = get_logger("fanout.worker")


@dataclass(eq=False)
class Line:
    """A queue the worker polls: the events queue, or the bulk queue of broadcast shards. Each has its
    own slots (events at once), receive size and pollers, so a process takes one shard at a time from
    the bulk queue and leaves the others to the rest of the pool."""

    url: str
    batcher: Batcher
    slots: asyncio.Semaphore
    per_receive: int
    receiving: list[bool]  # per poller: a receive is open at SQS
    answered: int = 0  # receives SQS answered: while this grows, the readiness probe need not ask


#: What a poller hands its received batch to: the worker starts each message in a slot.
Start = Callable[[Line, list[Received]], Awaitable[None]]


class Intake:
    """The lines of one worker process, their pollers and the messages held from them."""

    def __init__(
        self, settings: Settings, hot: SqsClient, readiness: Readiness, stopping: asyncio.Event
    ) -> None:
        self.settings = settings
        self.readiness = readiness
        self._hot = hot
        self._stop = stopping
        self.lines: dict[str, Line] = {}  # by queue URL
        self._held: dict[str, tuple[Line, float]] = {}  # receipt -> its line, when its visibility was set

    def line(self, stack: AsyncExitStack, url: str, slots: int, per_receive: int, pollers: int) -> None:
        """Poll ``url`` with ``pollers`` long polls of up to ``per_receive`` messages, ``slots`` at once."""
        batcher = Batcher(self._hot, url)
        batcher.start()
        stack.push_async_callback(batcher.close)
        self.lines[url] = Line(url, batcher, asyncio.Semaphore(slots), per_receive, [False] * pollers)

    def pollers(self, start: Start) -> list[asyncio.Task[None]]:
        """One task per poller of every line, each handing what it receives to ``start``."""
        return [
            asyncio.create_task(self._poll(line, i, start))
            for line in self.lines.values()
            for i in range(len(line.receiving))
        ]

    def hold(self, line: Line, receipts: list[str]) -> None:
        """From now on the heartbeat keeps these messages invisible, until each is dropped."""
        now = time.monotonic()
        for receipt in receipts:
            self._held[receipt] = (line, now)

    def drop(self, receipt: str) -> None:
        self._held.pop(receipt, None)

    def held(self) -> list[tuple[Line, list[str]]]:
        """The receipts still held, grouped by the line they came from."""
        return _by_line(list(self._held.items()))

    async def _poll(self, line: Line, slot: int, start: Start) -> None:
        s = self.settings
        delay = 0.5
        while not self._stop.is_set():
            await line.slots.acquire()  # receive only what a free slot can start
            line.slots.release()
            if not (self.readiness.mongo and self.readiness.sqs):
                await asyncio.sleep(1)  # receiving now would only burn the messages' receive counts
                continue
            try:
                line.receiving[slot] = True
                reply = await self._hot.receive_message(
                    QueueUrl=line.url,
                    MaxNumberOfMessages=line.per_receive,
                    WaitTimeSeconds=s.receive_wait_s,
                    VisibilityTimeout=s.visibility_timeout_s,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                )
                line.answered += 1
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stop.is_set():  # the open receive failed after the stop: nothing to release
                    return
                self.readiness.sqs = False
                log.warning("receive_failed", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            finally:
                line.receiving[slot] = False
            await start(line, [received.parse(m, line.url) for m in reply.get("Messages", [])])

    async def stop_pollers(self, pollers: list[asyncio.Task[None]]) -> None:
        """Let receives already at SQS come back, then stop. SQS still hands messages to a long poll
        whose caller has gone, and they would stay invisible for the visibility timeout; a receive
        that returns after the stop releases what it brought instead."""
        receiving = [r for line in self.lines.values() for r in line.receiving]
        for task, open_ in zip(pollers, receiving, strict=True):
            if not open_:
                task.cancel()
        s = self.settings
        await asyncio.wait(pollers, timeout=min(s.receive_wait_s + 5, s.shutdown_budget_s))
        await cancel_all(pollers)  # those still open after the wait; every outcome retrieved

    async def keep_visible(self) -> None:
        """Heartbeat: extend the visibility of held messages before it runs out, shutdown drain included."""
        vis = self.settings.visibility_timeout_s
        while True:
            await asyncio.sleep(max(0.5, vis / 4))
            cutoff = time.monotonic() - vis / 2
            for line, old in _by_line((r, held) for r, held in self._held.items() if held[1] < cutoff):
                try:
                    await line.batcher.set_visibility(old, vis)
                    now = time.monotonic()
                    for r in old:
                        if r in self._held:
                            self._held[r] = (line, now)
                except Exception as exc:
                    log.warning("heartbeat_failed", error=type(exc).__name__)


def _by_line(held: Iterable[tuple[str, tuple[Line, float]]]) -> list[tuple[Line, list[str]]]:
    """Receipts grouped by the line they came from."""
    groups: dict[int, tuple[Line, list[str]]] = {}
    for receipt, (line, _) in held:
        groups.setdefault(id(line), (line, []))[1].append(receipt)
    return list(groups.values())
