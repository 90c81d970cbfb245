"""``AsyncBackgroundPublisher``: the background publisher for asyncio services (FastAPI, aiohttp).

The same behaviour as ``BackgroundPublisher`` (see ``background``), with sender tasks and aiobotocore.
Use it as ``async with AsyncBackgroundPublisher(settings) as pub`` (leaving the block flushes), or
``await pub.start()`` and ``await pub.close()`` in the application's lifespan.

At interpreter exit the event loop has gone, and a SIGTERM handler runs inside the very loop it would
need: both send what is left from the calling thread with a plain boto3 client, within
``FANOUT_PUBLISH_FLUSH_S``. Batches that were in flight go again (same event ids) since their fate is
unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from prometheus_client import CollectorRegistry

from fanout import queues
from fanout.config import Settings, aio_session
from fanout.envelope import QueueBody
from fanout.errors import PublishBufferFull, PublisherClosed
from fanout.logging import get_logger
from fanout.publish.background import SENDERS, failure, give_up, report, send_now, sqs_client
from fanout.publish.batch import Backoff, Buffer, Entry, Result
from fanout.publish.direct import build_event
from fanout.publish.exits import ExitHooks
from fanout.publish.metrics import metrics_for
from fanout.publish.send import asend_batch

log = get_logger("fanout.publisher")


class AsyncBackgroundPublisher:
    """Async background publisher (tasks on the running loop); the arguments are ``BackgroundPublisher``'s."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        linger_ms: float | None = None,
        buffer: int | None = None,
        block_ms: float | None = None,
        flush_s: float | None = None,
        senders: int = SENDERS,
        sigterm: bool = True,
    ) -> None:
        s = self.settings = settings or Settings()
        linger = s.publish_linger_ms if linger_ms is None else linger_ms
        self.block_s = (s.publish_block_ms if block_ms is None else block_ms) / 1000
        self.flush_s = s.publish_flush_s if flush_s is None else flush_s
        self.metrics = metrics_for(registry)
        self._senders = senders
        self._buf = Buffer(linger / 1000)
        # One slot per event buffered or in flight; waiters are served first come, first served.
        self._slots = asyncio.Semaphore(s.publish_buffer if buffer is None else buffer)
        self._backoff = Backoff()
        self._work = asyncio.Event()  # a batch may be ready
        self._done = asyncio.Event()  # a batch call ended: a flush may be done
        self._hurry = 0
        self._closed = False
        self._abandon = False
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._url = ""
        # From here, not from start(): events published before a start that never came go at exit too,
        # with boto3, imported now: at exit it cannot be (its import registers an atexit of its own).
        importlib.import_module("boto3")
        self._hooks = ExitHooks(self._on_exit, sigterm=sigterm)

    async def __aenter__(self) -> AsyncBackgroundPublisher:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> AsyncBackgroundPublisher:
        """Open the SQS client, resolve the queue URL and start the sender tasks."""
        config = AioConfig(
            parameter_validation=False,  # the requests are built here; see background.sqs_client
            connect_timeout=2,
            read_timeout=10,
            max_pool_connections=self._senders + 1,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        client = aio_session(self.settings).create_client("sqs", **self.settings.aws_client_kwargs(config))
        self._client = await self._stack.enter_async_context(client)
        try:
            self._url = await queues.aurl(self._client, self.settings)
        except BaseException:
            await self._stack.aclose()
            raise
        if queues.is_fifo(self._url):  # a FIFO group goes one batch at a time: a buffer of groups
            fifo = Buffer(self._buf.linger_s, fifo=True)
            for entry in self._buf.drain():  # events sent before the start, if any
                fifo.add(entry)
            self._buf = fifo
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self._senders)]
        return self

    @property
    def pending(self) -> int:
        """Events buffered or being sent."""
        return self._buf.pending()

    async def publish(self, event_type: str, **kwargs: Any) -> str:
        """Build, validate and buffer one event; returns its id (errors as ``BackgroundPublisher``)."""
        return await self.send(build_event(event_type, **kwargs))

    async def send(self, body: QueueBody) -> str:
        """Buffer a built event; returns its id. Awaits only when the buffer is full."""
        entry = Entry.of(body)
        if self._closed:
            raise PublisherClosed("the publisher is closed")
        try:
            async with asyncio.timeout(self.block_s):
                await self._slots.acquire()  # returns at once while there is room
        except TimeoutError:
            self.metrics.failed.labels(entry.label, "buffer_full").inc()
            full = f"{self.pending} events pending; no room within {self.block_s}s"
            raise PublishBufferFull(full) from None
        if self._closed:  # closed while this waited for room: its drain is done, nothing would send it
            self._slots.release()
            raise PublisherClosed("the publisher is closed")
        if self._buf.add(entry):
            self._work.set()
        self.metrics.buffered.labels(entry.label).inc()
        self.metrics.pending.inc()
        return body.id

    async def flush(self, timeout_s: float | None = None) -> int:
        """Send everything buffered now; wait up to ``timeout_s``. Returns how many are still unsent."""
        deadline = time.monotonic() + (self.flush_s if timeout_s is None else timeout_s)
        self._hurry += 1
        self._work.set()
        try:
            while self._buf.pending() and (left := deadline - time.monotonic()) > 0:
                await _wait(self._done, left)
            return self._buf.pending()
        finally:
            self._hurry -= 1

    async def close(self, timeout_s: float | None = None) -> int:
        """Stop accepting events, flush, stop the senders, close the client; returns the unsent count."""
        if self._closed:
            return 0
        self._closed = True
        self._hooks.remove()
        await self.flush(timeout_s)
        self._abandon = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        unsent = self._buf.drain()
        for _ in unsent:  # the senders are gone: a publish waiting for room then finds it closed
            self._slots.release()
        give_up(self.metrics, unsent)
        self.metrics.pending.dec(len(unsent))
        await self._stack.aclose()
        return len(unsent)

    def _on_exit(self, why: str) -> None:
        """Exit or SIGTERM: no loop can send for us now, so send what is left from this thread."""
        if self._closed:
            return
        buffered = len(self._buf)  # in-flight batches settle their own slots if their call ends
        entries = self._buf.drain()
        if why == "exit":
            self._closed = True
        if entries:
            client = sqs_client(self.settings, 1, timeout_s=min(10, self.flush_s))  # a call within the budget
            try:
                url = self._url or queues.url(client, self.settings)  # never started: resolved here
            except Exception as exc:
                log.error("publisher_queue_unknown", error=failure(exc))
                give_up(self.metrics, entries)
            else:
                send_now(client, url, entries, self.metrics, self.flush_s)
            finally:
                client.close()
            for _ in range(buffered):
                self._slots.release()
            self.metrics.pending.dec(buffered)

    # ---- the sender tasks

    async def _run(self) -> None:
        while (batch := await self._next()) is not None:
            try:
                result = await asend_batch(self._client, self._url, batch)
            except asyncio.CancelledError:
                self._buf.done(batch, batch)  # fate unknown: send it again rather than lose it
                raise
            except Exception as exc:
                result = Result(retry=batch)
                self._failed(f"call failed: {failure(exc)}", batch)
            else:
                if result.retry:
                    self._failed(f"entries failed: {result.why}", result.retry)
            report(self.metrics, batch, result)
            self._buf.done(batch, result.retry)
            if result.retry:
                self._backoff.failed()
                self._work.set()
            elif self._backoff.ok():
                log.info("publish_recovered")
            if settled := len(result.sent) + len(result.refused):
                for _ in range(settled):
                    self._slots.release()
                self.metrics.pending.dec(settled)
            self._done.set()

    async def _next(self) -> list[Entry] | None:
        while not self._abandon:
            now = time.monotonic()
            due = self._buf.due_in(now, hurry=bool(self._hurry) or self._closed)
            pause = self._backoff.until - now
            if due == 0 and pause <= 0:
                batch = self._buf.take()
                if self._buf.fifo and self._buf.due_in(now, hurry=True) is not None:
                    self._work.set()  # what this batch skipped may go beside it (see BackgroundPublisher)
                return batch
            waits = [t for t in (due, pause if pause > 0 else None) if t is not None]
            await _wait(self._work, max(waits) if waits else None)
        return None

    def _failed(self, why: str, entries: list[Entry]) -> None:
        if self._backoff.failures == 0:
            log.warning("publish_failed", why=why, events=len(entries), buffered=len(self._buf))


async def _wait(event: asyncio.Event, timeout_s: float | None) -> None:
    """Wait for ``event`` (cleared first) at most ``timeout_s``."""
    event.clear()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()
