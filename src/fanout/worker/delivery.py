"""Fan-out of one parsed event: resolve connections, post the frame to each, prune the gone."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fanout.catalog import metric_label
from fanout.envelope import QueueBody
from fanout.gateway.client import ManagementClient, Outcome, sleep_backoff
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.store import Connection, ConnectionStore
from fanout.worker.limiter import AdaptiveLimiter

log = get_logger("fanout.delivery")

#: A 410 this soon after $connect may be API Gateway's documented connect race: confirm before pruning.
CONNECT_GRACE_S = 5.0


@dataclass
class FanoutResult:
    """What happened to one event's posts."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # still failing after retries: worth another round
    refused: list[str] = field(default_factory=list)  # 403: misconfigured endpoint or permissions
    too_large: bool = False  # 413: no retry fixes the frame
    retries: int = 0
    attempts: Counter[Outcome] = field(default_factory=Counter)  # every post attempt's answer

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values())

    def endpoint_down(self) -> bool:
        """Every post was refused at the socket: the management API itself is unreachable."""
        return bool(self.attempted) and self.outcomes[Outcome.UNREACHABLE] == self.attempted

    def event_outcome(self) -> str:
        """The ``fanout_events_total`` outcome label."""
        if not self.attempted:
            return "no_connections"
        if not (self.failed or self.refused or self.too_large):
            return "delivered"
        return "partial" if self.outcomes[Outcome.OK] else "failed"


class Deliverer:
    """Posts events to connections with bounded concurrency, paced retries and safe pruning."""

    def __init__(
        self,
        store: ConnectionStore,
        client: ManagementClient,
        metrics: Metrics,
        *,
        max_posts_in_flight: int,
        attempts: int,
        limiter: AdaptiveLimiter | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._metrics = metrics
        self._slots = asyncio.BoundedSemaphore(max_posts_in_flight)
        self._attempts = attempts
        self.limiter = limiter or AdaptiveLimiter()
        self.in_flight = 0  # posts awaiting an answer; the worker samples it into a gauge
        self._timers: dict[str, tuple[Any, Any]] = {}  # label -> (post latency, delivery latency)

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
        # Counted once per event rather than once per post: the hot path stays cheap.
        for outcome, count in result.attempts.items():
            self._metrics.deliveries.labels(label, outcome.value).inc(count)
        if result.retries:
            self._metrics.retries.labels(label).inc(result.retries)
        return result

    def _timers_for(self, label: str) -> tuple[Any, Any]:
        timers = self._timers.get(label)
        if timers is None:
            m = self._metrics
            timers = self._timers[label] = (m.post_latency.labels(label), m.delivery_latency.labels(label))
        return timers

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
        self.in_flight += 1
        try:
            outcome = await self._post_with_retries(conn, frame, digest, label, deadline, result)
            result.outcomes[outcome] += 1
            if outcome is Outcome.OK:
                self._timers_for(label)[1].observe(max(0.0, time.time() - sent_at))
            elif outcome is Outcome.GONE:
                # Still gone after the grace retries of a young connection: leave it to the TTL.
                if not self._young(conn) and await self._store.prune(conn):
                    m.pruned.inc()
            elif outcome.retryable:
                result.failed.append(conn.connection_id)
            elif outcome is Outcome.FORBIDDEN:
                result.refused.append(conn.connection_id)
                log.error("post_forbidden", endpoint=conn.domain_name, stage=conn.stage)
            elif outcome is Outcome.TOO_LARGE:
                result.too_large = True
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _post_with_retries(
        self, conn: Connection, frame: bytes, digest: str, label: str, deadline: float, result: FanoutResult
    ) -> Outcome:
        m = self._metrics
        post_latency = self._timers_for(label)[0]
        attempt = 0
        while True:
            paced = time.perf_counter()
            await self.limiter.acquire()
            started = time.perf_counter()
            if started - paced > 0.001:  # the limiter held this post back (it paces only after 429s)
                m.throttle_wait.inc(started - paced)
            outcome = await self._client.post(conn, frame, digest)
            post_latency.observe(time.perf_counter() - started)
            result.attempts[outcome] += 1
            attempt += 1
            self.limiter.record(outcome is Outcome.THROTTLED)
            retry = outcome.retryable or (outcome is Outcome.GONE and self._young(conn))
            if not retry or attempt >= self._attempts or time.monotonic() >= deadline:
                return outcome
            result.retries += 1
            await sleep_backoff(attempt)

    @staticmethod
    def _young(conn: Connection) -> bool:
        return conn.connected_at is not None and time.time() - conn.connected_at.timestamp() < CONNECT_GRACE_S
