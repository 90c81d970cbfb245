"""``BackgroundPublisher``: ``publish`` puts the event in a bounded buffer and returns; sender threads
send the buffer with ``SendMessageBatch``.

A batch goes at once when it is full (10 events or 256 KiB) and after ``FANOUT_PUBLISH_LINGER_MS``
otherwise. Entries that fail within a batch, and whole calls that fail (SQS unreachable, throttled, or a
400 that is the queue's: a missing queue, a KMS key or grant, access denied), are retried after a shared
backoff (0.1 s doubling to 2 s) until they are sent or the publisher closes, and logged once per run of
failures (``publish_failed`` with SQS's code). Only an event SQS refuses for its content
(``InvalidParameterValue``, ``InvalidMessageContents``: too large for the queue, text it refuses) is
dropped, counted (``reason="refused"``) and logged with its id; a batch SQS refuses whole goes again one
entry at a time, so only that event is (``send``).

When the buffer is full, ``publish`` waits up to ``FANOUT_PUBLISH_BLOCK_MS`` for room, then raises
``PublishBufferFull``: an accepted event is never dropped silently, and a refused one is the caller's to
handle. ``close()``, interpreter exit and SIGTERM flush within ``FANOUT_PUBLISH_FLUSH_S``; what is still
unsent then is counted (``reason="unsent_at_close"``), logged with its ids, and returned by ``close()``.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from fanout import queues
from fanout.config import Settings, boto3_session
from fanout.envelope import QueueBody
from fanout.errors import PublishBufferFull, PublisherClosed
from fanout.logging import get_logger
from fanout.publish.batch import Backoff, Buffer, Entry, Result, error_code, split
from fanout.publish.direct import build_event
from fanout.publish.exits import ExitHooks
from fanout.publish.metrics import PublisherMetrics, metrics_for
from fanout.publish.send import send_batch

log = get_logger("fanout.publisher")

SENDERS = 4  # batch calls in flight: SQS answers in milliseconds, so a few keep up with thousands/s


def sqs_client(settings: Settings, senders: int = SENDERS, timeout_s: float = 10) -> Any:
    """A boto3 SQS client for batch sends: short timeouts (``timeout_s`` to read a reply, 2 s at most to
    connect), no retries of its own (the publisher retries), no validation of the requests this module
    builds (a tenth of a call's CPU)."""
    config = Config(
        parameter_validation=False,
        connect_timeout=min(2, timeout_s),
        read_timeout=timeout_s,
        max_pool_connections=senders + 1,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return boto3_session(settings).client("sqs", **settings.aws_client_kwargs(config))


def report(metrics: PublisherMetrics, batch: list[Entry], result: Result) -> None:
    """Count one batch call's outcome; log refused entries by id (never their payload)."""
    metrics.batch_size.observe(len(batch))
    metrics.count(metrics.sent, result.sent)
    metrics.count(metrics.retried, result.retry)
    for entry, code in result.refused:
        metrics.failed.labels(entry.label, "refused").inc()
        log.error("publish_refused", event_id=entry.id, event_type=entry.label, code=code)


def failure(exc: Exception) -> str:
    """What a failed call is logged as: SQS's error code (``AWS.SimpleQueueService.NonExistentQueue``,
    ``KMS.AccessDeniedException``...), else the exception's class."""
    return (error_code(exc) or "ClientError") if isinstance(exc, ClientError) else type(exc).__name__


def give_up(metrics: PublisherMetrics, unsent: list[Entry]) -> None:
    """Count and name the events a closing publisher could not send."""
    if unsent:
        metrics.count(metrics.failed, unsent, "unsent_at_close")
        log.error("publisher_closed_unsent", count=len(unsent), event_ids=[e.id for e in unsent[:50]])


def send_now(client: Any, url: str, entries: list[Entry], metrics: PublisherMetrics, budget_s: float) -> int:
    """Send ``entries`` from the calling thread, retrying within ``budget_s``; returns how many are left.
    No call starts after ``budget_s``: with SQS not answering, each would wait out its read timeout."""
    deadline = time.monotonic() + budget_s
    backoff = Backoff()
    todo = entries
    while todo and time.monotonic() < deadline:
        retry: list[Entry] = []
        for batch in split(todo):
            if time.monotonic() >= deadline:
                retry += batch
                continue
            try:
                result = send_batch(client, url, batch)
            except Exception:
                result = Result(retry=batch)
            report(metrics, batch, result)
            retry += result.retry
        todo = retry
        if todo:
            time.sleep(min(backoff.failed(), max(0.0, deadline - time.monotonic())))
    give_up(metrics, todo)
    return len(todo)


class BackgroundPublisher:
    """Sync background publisher (threads). Create once per process; ``publish`` is thread-safe.

    ``registry``: where its metrics go (prometheus-client's default registry when None). The keyword
    arguments override the ``FANOUT_PUBLISH_*`` settings; ``senders``: batch calls in flight at most;
    ``sigterm=False`` leaves SIGTERM alone (then close the publisher on the application's shutdown path).
    """

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
        self._client = sqs_client(s, senders)
        self._url = queues.url(self._client, s)
        self._buf = Buffer(linger / 1000, fifo=queues.is_fifo(self._url))
        self._capacity = s.publish_buffer if buffer is None else buffer
        # One slot per event buffered or in flight; waiters are woken first come, first served.
        self._slots = threading.Semaphore(self._capacity)
        self._backoff = Backoff()
        lock = threading.RLock()  # re-entrant: the SIGTERM handler may flush while this thread publishes
        self._work = threading.Condition(lock)  # senders wait here for a batch
        self._done = threading.Condition(lock)  # flushes wait here for the buffer to empty
        self._hurry = 0  # flushes under way: send without lingering
        self._closed = False
        self._abandon = False
        self._threads = [
            threading.Thread(target=self._run, name=f"fanout-publisher-{i}", daemon=True)
            for i in range(senders)
        ]
        for thread in self._threads:
            thread.start()
        self._hooks = ExitHooks(self._on_exit, sigterm=sigterm)
        self._forked = False  # a child of the process that made it, its senders not started yet
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @property
    def pending(self) -> int:
        """Events buffered or being sent."""
        return self._buf.pending()

    def publish(self, event_type: str, **kwargs: Any) -> str:
        """Build, validate and buffer one event (see ``build_event``); returns its id.

        Raises ``InvalidMessage`` on bad input, ``PublishBufferFull`` when there is no room within
        ``block_ms``, ``PublisherClosed`` after ``close()``."""
        return self.send(build_event(event_type, **kwargs))

    def send(self, body: QueueBody) -> str:
        """Buffer a built event; returns its id."""
        entry = Entry.of(body)
        if self._closed:
            raise PublisherClosed("the publisher is closed")
        if self._forked:
            self._start_in_child()
        if not self._slots.acquire(timeout=self.block_s):
            self.metrics.failed.labels(entry.label, "buffer_full").inc()
            raise PublishBufferFull(f"{self.pending} events pending; no room within {self.block_s}s")
        with self._work:
            if self._closed:  # closed while this waited for room: the senders may be gone already
                self._slots.release()
                raise PublisherClosed("the publisher is closed")
            if self._buf.add(entry):
                self._work.notify()
        self.metrics.buffered.labels(entry.label).inc()
        self.metrics.pending.inc()
        return body.id

    def flush(self, timeout_s: float | None = None) -> int:
        """Send everything buffered now, without lingering; wait up to ``timeout_s`` (default
        ``FANOUT_PUBLISH_FLUSH_S``). Returns how many events are still unsent."""
        deadline = time.monotonic() + (self.flush_s if timeout_s is None else timeout_s)
        with self._work:
            self._hurry += 1
            self._work.notify_all()
            try:
                while self._buf.pending() and (left := deadline - time.monotonic()) > 0:
                    self._done.wait(left)
                return self._buf.pending()
            finally:
                self._hurry -= 1

    def close(self, timeout_s: float | None = None) -> int:
        """Stop accepting events, flush, stop the senders. Returns how many events could not be sent."""
        with self._work:
            if self._closed:
                return 0
            self._closed = True
        self._hooks.remove()
        self.flush(timeout_s)
        with self._work:
            self._abandon = True  # a batch in flight now leaves its slots to this, when its call ends
            unsent = self._buf.drain()  # buffered and in flight
            self._work.notify_all()
        if unsent:  # a publish waiting for room then finds the publisher closed, at once
            self._slots.release(len(unsent))
        for thread in self._threads:
            thread.join(0.1)  # a sender stuck in a call ends with its read timeout; it is a daemon
        give_up(self.metrics, unsent)
        self.metrics.pending.dec(len(unsent))
        if not self._forked:  # a child that never published leaves the parent's client alone
            self._client.close()
        return len(unsent)

    def _after_fork(self) -> None:
        """In a forked child (gunicorn ``--preload``, multiprocessing): the sender threads stayed in the
        parent, which also sends what it had buffered. Start empty, with fresh locks; the first publish
        starts senders and a client of this process (an inherited one shares the parent's sockets)."""
        self.metrics.pending.dec(self._buf.pending())  # the parent's events, counted there
        lock = threading.RLock()
        self._work = threading.Condition(lock)
        self._done = threading.Condition(lock)
        self._buf = Buffer(self._buf.linger_s, fifo=self._buf.fifo)
        self._slots = threading.Semaphore(self._capacity)
        self._backoff = Backoff()
        self._hurry = 0
        self._threads = []
        self._forked = True

    def _start_in_child(self) -> None:
        with self._work:
            if not self._forked:
                return
            self._client = sqs_client(self.settings, self._senders)
            self._threads = [
                threading.Thread(target=self._run, name=f"fanout-publisher-{i}", daemon=True)
                for i in range(self._senders)
            ]
            for thread in self._threads:
                thread.start()
            self._forked = False

    def _on_exit(self, why: str) -> None:
        if why == "exit":
            self.close()
        elif left := self.flush():  # SIGTERM: the application may go on publishing while it stops
            log.error("publisher_flush_incomplete", signal="SIGTERM", unsent=left)

    # ---- the sender threads

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            try:
                result = send_batch(self._client, self._url, batch)
            except Exception as exc:
                result = Result(retry=batch)
                self._failed(f"call failed: {failure(exc)}", batch)
            else:
                if result.retry:
                    self._failed(f"entries failed: {result.why}", result.retry)
            report(self.metrics, batch, result)
            with self._work:
                drained = self._abandon  # close() took this batch too, and counted it as unsent
                if not drained:
                    self._buf.done(batch, result.retry)
                if result.retry:
                    self._backoff.failed()
                elif self._backoff.ok():
                    log.info("publish_recovered")
                self._done.notify_all()
            if not drained and (settled := len(result.sent) + len(result.refused)):
                self._slots.release(settled)
                self.metrics.pending.dec(settled)

    def _next(self) -> list[Entry] | None:
        """The next batch to send, waiting for one to fill, linger or the backoff; None: stop."""
        with self._work:
            while not self._abandon:
                now = time.monotonic()
                due = self._buf.due_in(now, hurry=bool(self._hurry) or self._closed)
                pause = self._backoff.until - now
                if due == 0 and pause <= 0:
                    batch = self._buf.take()
                    if self._buf.fifo and self._buf.due_in(now, hurry=True) is not None:
                        # what this batch skipped or left may go beside it: a sender waiting for no
                        # batch at all (every group in flight a moment ago) takes it or waits its linger
                        self._work.notify()
                    return batch
                waits = [t for t in (due, pause if pause > 0 else None) if t is not None]
                self._work.wait(max(waits) if waits else None)
        return None

    def _failed(self, why: str, entries: list[Entry]) -> None:
        if self._backoff.failures == 0:  # once per run of failures, not once per call
            log.warning("publish_failed", why=why, events=len(entries), buffered=len(self._buf))


def _after_fork(ref: weakref.ref[BackgroundPublisher]) -> None:
    """Tell a publisher that outlived its fork (a weak reference: the hook never keeps it alive)."""
    if (pub := ref()) is not None:
        pub._after_fork()
