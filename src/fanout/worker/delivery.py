"""Fan-out of one parsed event: resolve connections, post the frame to each, prune the gone."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ulid import ULID

from fanout.catalog import metric_label
from fanout.envelope import QueueBody, now_iso
from fanout.gateway.client import ManagementClient, Outcome, sleep_backoff
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.store import Connection, ConnectionStore
from fanout.worker.limiter import AdaptiveLimiter

log = get_logger("fanout.delivery")

#: A 410 this soon after $connect may be API Gateway's documented connect race: confirm before pruning.
CONNECT_GRACE_S = 5.0
#: Outcomes that prove an endpoint answers (a timeout or a refusal by policy says nothing about it).
_ANSWERED = frozenset(
    {Outcome.OK, Outcome.GONE, Outcome.THROTTLED, Outcome.SERVER_ERROR, Outcome.FORBIDDEN, Outcome.TOO_LARGE}
)
_UNSUPPORTED = Outcome.UNSUPPORTED_VERSION
RECONNECT = "system.reconnect"


@dataclass
class FanoutResult:
    """What happened to one event's posts."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)  # still failing after retries: worth another round
    refused: list[str] = field(default_factory=list)  # 403: misconfigured endpoint or permissions
    users: dict[str, str] = field(default_factory=dict)  # user id of each failed or refused connection
    refused_endpoints: set[str] = field(default_factory=set)  # endpoints that answered 403
    too_large: bool = False  # 413: no retry fixes the frame
    retries: int = 0
    attempts: Counter[Outcome] = field(default_factory=Counter)  # every post attempt's answer
    reachable: set[str] = field(default_factory=set)  # endpoints that answered a post over HTTP
    unreachable: set[str] = field(default_factory=set)  # endpoints where a post ended refused at the socket

    @property
    def attempted(self) -> int:
        return sum(self.outcomes.values()) - self.outcomes[Outcome.EXPIRED] - self.outcomes[_UNSUPPORTED]

    def users_of(self, connection_ids: tuple[str, ...]) -> frozenset[str]:
        """The users of some failed or refused connections."""
        return frozenset(self.users[c] for c in connection_ids if c in self.users)

    def endpoint_down(self) -> bool:
        """Every post was refused at the socket: the management API itself is unreachable."""
        return bool(self.attempted) and self.outcomes[Outcome.UNREACHABLE] == self.attempted

    def fail(self, conn: Connection, refused: bool = False) -> None:
        (self.refused if refused else self.failed).append(conn.connection_id)
        self.users[conn.connection_id] = conn.user_id

    def event_outcome(self) -> str:
        """The ``fanout_events_total`` outcome label."""
        if not self.attempted:
            return "expired" if self.outcomes[Outcome.EXPIRED] else "no_connections"
        if not (self.failed or self.refused or self.too_large):
            return "delivered"
        return "partial" if self.outcomes[Outcome.OK] else "failed"


@dataclass(slots=True)
class _Event:
    """One event's share of the lanes: what its posts need and how many are still to answer."""

    frame: bytes
    digest: str
    label: str
    sent_at: float
    deadline: float  # monotonic: no retry after it
    expires_at: float  # epoch seconds: no post at all after it
    result: FanoutResult
    done: asyncio.Future[None]
    pending: int = 1  # one for deliver() itself until every connection is queued
    stopped: bool = False  # deliver() was cancelled or failed: skip the posts not yet started
    once: str | None = None  # post to a connection only if the store has not recorded this key for it

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


class Deliverer:
    """Posts events to connections through a fixed set of lanes, with paced retries and safe pruning.

    ``max_posts_in_flight`` lanes take (connection, event) jobs from bounded queues, so posts in
    flight are bounded across every event of the process, and a busy worker costs no task, semaphore
    or wake-up per post: a lane that finds its queue non-empty goes straight on to the next post.

    Bulk posts (broadcast shards) have a quarter of the lanes and a line of their own, so a broadcast
    never queues ahead of a typing indicator or a notification: those keep three quarters of the lanes.
    """

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
        self._jobs: asyncio.Queue[tuple[Connection, _Event]] = asyncio.Queue(self._fast_lanes)
        self._bulk: asyncio.Queue[tuple[Connection, _Event]] = asyncio.Queue(self._bulk_lanes)
        self._lanes: list[asyncio.Task[None]] = []
        self._attempts = attempts
        self.limiter = limiter or AdaptiveLimiter()
        self.in_flight = 0  # posts awaiting an answer; the worker samples it into a gauge
        self._timers: dict[str, tuple[Any, Any]] = {}  # label -> (post latency, delivery latency)

    async def close(self) -> None:
        """Stop the lanes (after the worker's drain: no event is waiting on them any more)."""
        for lane in self._lanes:
            lane.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes.clear()

    async def connections(
        self, body: QueueBody, only: tuple[str, ...] | None, shard: tuple[int, int] | None = None
    ) -> AsyncIterator[list[Connection]]:
        """The event's live connections in batches; ``only`` narrows a remainder round to its ids,
        ``shard`` a shard to its range of connection ids."""
        started = time.perf_counter()
        store = self._store
        batches = store.by_ids(only, body.target) if only is not None else store.resolve(body.target, shard)
        async for batch in batches:
            self._metrics.lookup_latency.observe(time.perf_counter() - started)
            yield batch
            started = time.perf_counter()

    async def deliver(
        self,
        body: QueueBody,
        deadline: float,
        only: tuple[str, ...] | None = None,
        expires_at: float = float("inf"),
        *,
        shard: tuple[int, int] | None = None,
        bulk: bool = False,
    ) -> FanoutResult:
        """Post ``body``'s frame once to each of its connections: retries until ``deadline`` (monotonic),
        no post once the event ``expires_at`` (epoch seconds), even if it waited behind other work.
        ``bulk`` posts go through the bulk lanes. A connection that does not speak the event's payload
        version gets no post (``unsupported_version``) but, once, a ``system.reconnect`` asking it to
        upgrade."""
        if not self._lanes:
            self._lanes = [asyncio.create_task(self._lane(self._jobs)) for _ in range(self._fast_lanes)]
            self._lanes += [asyncio.create_task(self._lane(self._bulk)) for _ in range(self._bulk_lanes)]
        jobs = self._bulk if bulk else self._jobs
        frame = body.client_frame
        event = _Event(
            frame,
            hashlib.sha256(frame).hexdigest(),
            metric_label(body.type),
            body.sent_at_epoch(),
            deadline,
            expires_at,
            FanoutResult(),
            asyncio.get_running_loop().create_future(),
        )
        version = body.payload_version
        upgrade: _Event | None = None  # system.reconnect to connections that do not speak the version
        try:
            async for batch in self.connections(body, only, shard):
                for conn in batch:
                    if event.stopped:
                        break
                    target = event
                    # One attribute test per post when nobody declared versions and the event is version 1.
                    if (version != 1 or conn.payloads is not None) and not conn.speaks(body.type, version):
                        event.result.outcomes[_UNSUPPORTED] += 1
                        event.result.attempts[_UNSUPPORTED] += 1
                        upgrade = upgrade or self._upgrade(body, version, event)
                        target = upgrade
                    target.pending += 1
                    await jobs.put((conn, target))  # waits only when every lane of its kind is busy
            event.finish_one()
            if upgrade is None:
                await event.done
            else:
                upgrade.finish_one()
                await asyncio.gather(event.done, upgrade.done)
        except BaseException:
            event.stop()  # the lanes skip what they have not started; started posts finish alone
            if upgrade is not None:
                upgrade.stop()
            raise
        if upgrade is not None:
            self._count(upgrade)
        self._count(event)
        return event.result

    def _upgrade(self, body: QueueBody, version: int, event: _Event) -> _Event:
        """The ``system.reconnect`` frame asking clients to upgrade, posted at most once per connection
        per event type and version (recorded on the connection record, so across the pool too)."""
        frame = json.dumps(
            {
                "v": 1,
                "id": f"evt_{ULID()}",
                "type": RECONNECT,
                "payload": {"reason": "upgrade", "eventType": body.type, "payloadVersion": version},
                "sentAt": now_iso(),
            },
            separators=(",", ":"),
        ).encode()
        return _Event(
            frame,
            hashlib.sha256(frame).hexdigest(),
            metric_label(RECONNECT),
            event.sent_at,
            event.deadline,
            event.expires_at,
            FanoutResult(),
            asyncio.get_running_loop().create_future(),
            once=f"{body.type}@{version}",
        )

    def _count(self, event: _Event) -> None:
        result = event.result
        # Counted once per event rather than once per post: the hot path stays cheap.
        for outcome, count in result.attempts.items():
            self._metrics.deliveries.labels(event.label, outcome.value).inc(count)
        if result.retries:
            self._metrics.retries.labels(event.label).inc(result.retries)

    def _timers_for(self, label: str) -> tuple[Any, Any]:
        timers = self._timers.get(label)
        if timers is None:
            m = self._metrics
            timers = self._timers[label] = (m.post_latency.labels(label), m.delivery_latency.labels(label))
        return timers

    async def _lane(self, jobs: asyncio.Queue[tuple[Connection, _Event]]) -> None:
        while True:
            conn, event = await jobs.get()
            if event.stopped:
                continue
            self.in_flight += 1
            try:
                await self._post(conn, event)
            except Exception as exc:  # a store error while pruning: the event's handler decides
                event.fail(exc)
            finally:
                self.in_flight -= 1
                event.finish_one()

    async def _post(self, conn: Connection, event: _Event) -> None:
        result = event.result
        if time.time() > event.expires_at:  # it expired while queued behind other posts
            result.outcomes[Outcome.EXPIRED] += 1
            result.attempts[Outcome.EXPIRED] += 1
            return
        if event.once is not None and not await self._store.ask_upgrade_once(conn.connection_id, event.once):
            return  # asked before, by this event or an earlier one
        outcome = await self._post_with_retries(conn, event)
        result.outcomes[outcome] += 1
        if outcome in _ANSWERED:
            result.reachable.add(conn.endpoint)
        elif outcome is Outcome.UNREACHABLE:
            result.unreachable.add(conn.endpoint)
        if outcome is Outcome.OK:
            self._timers_for(event.label)[1].observe(max(0.0, time.time() - event.sent_at))
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

    async def _post_with_retries(self, conn: Connection, event: _Event) -> Outcome:
        result = event.result
        limiter = self.limiter
        post_latency = self._timers_for(event.label)[0]
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
            limiter.record(outcome is Outcome.THROTTLED)
            retry = outcome.retryable or (outcome is Outcome.GONE and self._young(conn))
            if not retry or attempt >= self._attempts or time.monotonic() >= event.deadline:
                return outcome
            await sleep_backoff(attempt)
            if time.time() > event.expires_at:  # it expired during the backoff: no retry past its expiry
                result.attempts[Outcome.EXPIRED] += 1
                return Outcome.EXPIRED
            result.retries += 1

    @staticmethod
    def _young(conn: Connection) -> bool:
        return conn.connected_at is not None and time.time() - conn.connected_at.timestamp() < CONNECT_GRACE_S
