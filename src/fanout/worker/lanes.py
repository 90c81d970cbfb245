"""The post lanes: a fixed set of tasks that post (connection, event) jobs, with paced retries and safe
pruning.

``max_posts_in_flight`` lanes take jobs from bounded queues, so posts in flight are bounded across every
event of the process, and a busy worker costs no task, semaphore or wake-up per post: a lane that finds
its queue non-empty goes straight on to the next post. Bulk posts (broadcast shards) have a quarter of
the lanes and a queue of their own, so a broadcast never queues ahead of a typing indicator or a
notification: those keep three quarters of the lanes. What to post to whom is ``delivery.py``'s.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fanout.gateway.client import ManagementClient, Outcome, sleep_backoff
from fanout.metrics import Metrics
from fanout.store import Connection, ConnectionStore
from fanout.worker.limiter import AdaptiveLimiter
from fanout.worker.result import FanoutResult

#: A 410 this soon after $connect may be API Gateway's documented connect race: confirm before pruning.
CONNECT_GRACE_S = 5.0
#: Outcomes that prove an endpoint answers (a timeout or a refusal by policy says nothing about it).
_ANSWERED = frozenset(
    {Outcome.OK, Outcome.GONE, Outcome.THROTTLED, Outcome.SERVER_ERROR, Outcome.FORBIDDEN, Outcome.TOO_LARGE}
)


@dataclass(slots=True)
class Event:
    """One event's share of the lanes: what its posts need and how many are still to answer."""

    frame: bytes
    digest: str
    label: str
    sent_at: float
    deadline: float  # monotonic: no post or retry starts after it
    expires_at: float  # epoch seconds: no post at all after it
    result: FanoutResult
    done: asyncio.Future[None]
    pending: int = 1  # one for deliver() itself until every connection is queued
    stopped: bool = False  # deliver() was cancelled or failed: skip the posts not yet started
    once: str | None = None  # post to a connection only if the store has not recorded this key for it
    unanswered: int = 1  # connections whose first post has no answer yet, and deliver() itself
    on_answered: Callable[[], None] | None = None  # called once every first post has an answer
    # A conflated value's (conflate.Claim): asked before each retry whether a newer value was claimed since.
    claim: Callable[[], Awaitable[bool]] | None = None

    def answered_one(self) -> None:
        self.unanswered -= 1
        if self.unanswered == 0 and self.on_answered is not None:
            callback, self.on_answered = self.on_answered, None
            callback()

    def finish_one(self) -> None:
        self.pending -= 1
        if self.pending == 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """A lane's post raised: ``deliver()``, awaiting ``done``, raises it."""
        self.stopped = True
        if not self.done.done():
            self.done.set_exception(exc)

    def stop(self) -> None:
        """``deliver()`` itself raised or was cancelled: nothing awaits ``done`` any more, so it is
        cancelled rather than given the error (asyncio would log it as never retrieved)."""
        self.stopped = True
        self.done.cancel()


#: One post to make: a connection and the event it gets.
Job = tuple[Connection, Event]


class Lanes:
    """The lanes of one worker process and their two job queues: ``jobs`` and ``bulk``."""

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
        self._bulk_lanes = max(1, max_posts_in_flight // 4)
        self._fast_lanes = max(1, max_posts_in_flight - self._bulk_lanes)
        self.jobs: asyncio.Queue[Job] = asyncio.Queue(self._fast_lanes)
        self.bulk: asyncio.Queue[Job] = asyncio.Queue(self._bulk_lanes)
        self._lanes: list[asyncio.Task[None]] = []
        self._attempts = attempts
        self.limiter = limiter or AdaptiveLimiter()
        self.in_flight = 0  # posts awaiting an answer; the worker samples it into a gauge
        # Each labelled child looked up once: prometheus_client's labels() is a dozen Python calls.
        self._deliveries = functools.cache(metrics.deliveries.labels)
        self._post_latency = functools.cache(metrics.post_latency.labels)
        self._delivery_latency = functools.cache(metrics.delivery_latency.labels)

    def start(self) -> None:
        """Start the lanes on first use (they need the running loop)."""
        if not self._lanes:
            self._lanes = [asyncio.create_task(self._lane(self.jobs)) for _ in range(self._fast_lanes)]
            self._lanes += [asyncio.create_task(self._lane(self.bulk)) for _ in range(self._bulk_lanes)]

    async def close(self) -> None:
        """Stop the lanes (after the worker's drain: no event is waiting on them any more)."""
        for lane in self._lanes:
            lane.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes.clear()

    def count(self, event: Event) -> None:
        """Count a finished event's post answers and retries."""
        result = event.result
        # Counted once per event rather than once per post: the hot path stays cheap.
        for outcome, count in result.attempts.items():
            self._deliveries(event.label, outcome.value).inc(count)
        if result.retries:
            self._metrics.retries.labels(event.label).inc(result.retries)

    async def _lane(self, jobs: asyncio.Queue[Job]) -> None:
        while True:
            conn, event = await jobs.get()
            if event.stopped:
                event.answered_one()
                continue
            self.in_flight += 1
            try:
                await self._post(conn, event)
            except Exception as exc:  # a store error while pruning: the event's handler decides
                event.fail(exc)
            finally:
                self.in_flight -= 1
                event.finish_one()

    async def _post(self, conn: Connection, event: Event) -> None:
        result = event.result
        if time.time() > event.expires_at:  # it expired while queued behind other posts
            event.answered_one()
            result.outcomes[Outcome.EXPIRED] += 1
            result.attempts[Outcome.EXPIRED] += 1
            return
        if time.monotonic() >= event.deadline:  # its time is up while it waited: a later round posts it
            event.answered_one()
            result.outcomes[Outcome.TIMEOUT] += 1  # no request made: counted in no attempt
            result.unposted += 1
            result.fail(conn)
            return
        if event.once is not None and not await self._store.ask_upgrade_once(conn.connection_id, event.once):
            return  # asked before, by this event or an earlier one
        outcome = await self._post_with_retries(conn, event)
        if outcome is None:  # its retry was not made: a newer value of its key was claimed (conflate.py)
            return
        result.outcomes[outcome] += 1
        if outcome in _ANSWERED:
            result.reachable.add(conn.endpoint)
        elif outcome is Outcome.UNREACHABLE:
            result.unreachable.add(conn.endpoint)
        if outcome is Outcome.OK:
            self._delivery_latency(event.label).observe(max(0.0, time.time() - event.sent_at))
        elif outcome is Outcome.GONE:
            if self._young(conn):  # API Gateway's connect race: try again in a later round, never prune
                result.fail(conn)
            elif await self._store.prune(conn):
                self._metrics.pruned.inc()
        elif outcome.retryable:
            result.fail(conn)
        elif outcome is Outcome.FORBIDDEN:
            result.fail(conn, refused=True)
            result.refused_endpoints.add(conn.endpoint)  # logged once per event by the worker
        elif outcome is Outcome.TOO_LARGE:
            result.too_large = True

    async def _post_with_retries(self, conn: Connection, event: Event) -> Outcome | None:
        """The last attempt's outcome; None when a retry was not made because a newer value of a
        conflated event's key was claimed since: posted after that value, it would replace it on the
        client (an older counter as the last frame)."""
        result = event.result
        limiter = self.limiter
        post_latency = self._post_latency(event.label)
        attempt = 0
        while True:
            started = time.perf_counter()
            if limiter.rate is not None:  # pacing only after 429s; the common path skips the await
                await limiter.acquire()
                paced, started = started, time.perf_counter()
                if started - paced > 0.001:
                    self._metrics.throttle_wait.inc(started - paced)
            outcome = await self._client.post(conn, event.frame, event.digest)
            post_latency.observe(time.perf_counter() - started)
            result.attempts[outcome] += 1
            attempt += 1
            if attempt == 1:
                event.answered_one()
            limiter.record(outcome is Outcome.THROTTLED)
            retry = outcome.retryable or (outcome is Outcome.GONE and self._young(conn))
            if not retry or attempt >= self._attempts or time.monotonic() >= event.deadline:
                return outcome
            await sleep_backoff(attempt)
            if time.time() > event.expires_at:  # it expired during the backoff: no retry past its expiry
                result.attempts[Outcome.EXPIRED] += 1
                return Outcome.EXPIRED
            if event.claim is not None and await event.claim():  # never asked before the first attempt
                result.conflated += 1  # its last answer still tells of the endpoint (endpoint_down)
                if outcome is Outcome.UNREACHABLE:
                    result.conflated_unreachable += 1
                    result.unreachable.add(conn.endpoint)
                elif outcome in _ANSWERED:
                    result.reachable.add(conn.endpoint)
                return None
            result.retries += 1

    @staticmethod
    def _young(conn: Connection) -> bool:
        # Within the grace either way (a $connect's clock may run a little ahead of ours); a record dated
        # further ahead is no connect race and would never be pruned.
        if conn.connected_at is None:
            return False
        return abs(time.time() - conn.connected_at.timestamp()) < CONNECT_GRACE_S
