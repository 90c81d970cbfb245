"""Fan-out of one parsed event: resolve connections, post the frame to each, prune the gone."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fanout.catalog import metric_label
from fanout.envelope import QueueBody
from fanout.gateway.client import ManagementClient, Outcome, sleep_backoff
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.store import Connection, ConnectionStore

log = get_logger("fanout.delivery")


@dataclass
class FanoutResult:
    """What happened to one event's posts."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # connection ids worth another round
    permanent: Outcome | None = None  # a 413 or 403 that no retry fixes

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values())

    def event_outcome(self) -> str:
        """The ``fanout_events_total`` outcome label."""
        if not self.attempted:
            return "no_connections"
        if not self.failed and self.permanent is None:
            return "delivered"
        return "partial" if self.outcomes[Outcome.OK] else "failed"


class Deliverer:
    """Posts events to connections with bounded concurrency and per-post retries."""

    def __init__(
        self,
        store: ConnectionStore,
        client: ManagementClient,
        metrics: Metrics,
        *,
        max_posts_in_flight: int,
        attempts: int,
    ) -> None:
        self._store = store
        self._client = client
        self._metrics = metrics
        self._slots = asyncio.BoundedSemaphore(max_posts_in_flight)
        self._attempts = attempts

    async def connections(self, body: QueueBody, only: list[str] | None) -> AsyncIterator[list[Connection]]:
        """The event's live connections in batches; ``only`` narrows a remainder round to its ids."""
        started = time.perf_counter()
        batches = self._store.by_ids(only) if only is not None else self._store.resolve(body.target)
        async for batch in batches:
            self._metrics.lookup_latency.observe(time.perf_counter() - started)
            yield batch
            started = time.perf_counter()

    async def deliver(self, body: QueueBody, deadline: float, only: list[str] | None = None) -> FanoutResult:
        """Post ``body``'s frame once to each of its connections before ``deadline`` (monotonic)."""
        result = FanoutResult()
        frame = body.client_frame
        digest = hashlib.sha256(frame).hexdigest()
        label = metric_label(body.type)
        sent_at = body.sent_at_epoch()
        tasks: list[asyncio.Task[None]] = []
        async for batch in self.connections(body, only):
            for conn in batch:
                await self._slots.acquire()  # bounds posts in flight across every event of the process
                tasks.append(
                    asyncio.create_task(self._post(conn, frame, digest, label, sent_at, deadline, result))
                )
        if tasks:
            await asyncio.gather(*tasks)
        return result

    async def _post(
        self,
        conn: Connection,
        frame: bytes,
        digest: str,
        label: str,
        sent_at: float,
        deadline: float,
        result: FanoutResult,
    ) -> None:
        m = self._metrics
        m.posts_in_flight.inc()
        try:
            attempt = 0
            while True:
                started = time.perf_counter()
                outcome = await self._client.post(conn, frame, digest)
                m.post_latency.labels(label).observe(time.perf_counter() - started)
                m.deliveries.labels(label, outcome.value).inc()
                attempt += 1
                if not outcome.retryable or attempt >= self._attempts or time.monotonic() >= deadline:
                    break
                m.retries.labels(label).inc()
                await sleep_backoff(attempt)
            result.outcomes[outcome] += 1
            if outcome is Outcome.OK:
                m.delivery_latency.labels(label).observe(max(0.0, time.time() - sent_at))
            elif outcome is Outcome.GONE:
                if await self._store.prune(conn):
                    m.pruned.inc()
            elif outcome.retryable:
                result.failed.append(conn.connection_id)
            else:
                result.permanent = outcome
                if outcome is Outcome.FORBIDDEN:
                    log.error("post_forbidden", endpoint=conn.domain_name, stage=conn.stage)
        finally:
            m.posts_in_flight.dec()
            self._slots.release()
