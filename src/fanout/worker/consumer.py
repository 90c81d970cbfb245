"""The worker: long-polls SQS, fans each event out, and ends every message in an explicit outcome.

Read ``Worker.main`` top to bottom for the lifecycle. A message is parsed once where it is received
(``received.parse``), its fate decided by pure functions (``fate``), and carried out in one place
(``settle.Settler``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from fanout import queues
from fanout.catalog import policy_for
from fanout.config import Settings
from fanout.emf import CLOUDWATCH_METRICS, SAMPLED_METRICS, EmfEmitter
from fanout.flags import FlagStore, LiveSwitches
from fanout.gateway.client import Outcome
from fanout.health import Readiness, health_app, serve
from fanout.logging import bind_event, get_logger, short_id
from fanout.metrics import Metrics
from fanout.store import BUCKETS
from fanout.worker import fate, received
from fanout.worker.census import LEASES, Census, Lease
from fanout.worker.checks import Checks
from fanout.worker.clients import Clients, open_clients
from fanout.worker.conflate import LATEST, Conflator
from fanout.worker.delivery import Deliverer, FanoutResult
from fanout.worker.limiter import AdaptiveLimiter
from fanout.worker.received import Received
from fanout.worker.settle import Settler, Tally
from fanout.worker.sqs import Batcher

log = get_logger("fanout.worker")

PROBE_S = 2.0  # readiness probe interval


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


class Worker:
    """One worker process: SQS consumer, fan-out, health server."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        *,
        serve_health: bool = True,
        census: bool = True,
    ) -> None:
        self.settings = settings
        self.serve_health = serve_health
        self.census = census  # this process samples the socket census (one per pool: slot 0)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.readiness = Readiness()
        self._stop = asyncio.Event()
        self._lines: dict[str, Line] = {}  # by queue URL
        self._held: dict[str, tuple[Line, float]] = {}  # receipt -> its line, when its visibility was set
        self._tasks: set[asyncio.Task[None]] = set()
        self.pid = os.getpid()

    @property
    def tally(self) -> Tally:
        return self.settler.tally

    def stop(self) -> None:
        self._stop.set()

    async def main(self) -> Tally:
        """Run until SIGTERM/SIGINT (or ``stop()``), then shut down in two phases and log the tally."""
        s = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        async with AsyncExitStack() as stack:
            self.clients = clients = await open_clients(stack, s, self._skipped_record)
            self.switches = LiveSwitches(FlagStore.from_client(clients.mongo, s.mongo_db, s.flags_collection))
            self.deliverer = Deliverer(
                clients.store,
                clients.management,
                self.metrics,
                max_posts_in_flight=s.max_posts_in_flight,
                attempts=s.post_attempts,
                limiter=AdaptiveLimiter(s.max_posts_per_s),
            )
            stack.push_async_callback(self.deliverer.close)  # runs after the drain below
            if self.serve_health:
                app = health_app(lambda: self.registry, self.readiness.live, self.readiness.check)
                stack.push_async_callback((await serve(app, s.metrics_host, s.metrics_port)).cleanup)
            queue_url, bulk_url, dlq_url = await self._connect(clients)
            self._line(stack, queue_url, s.max_events_in_flight, 10, s.pollers)
            if bulk_url:
                self._line(stack, bulk_url, s.bulk_in_flight, 1, 1)
            batchers = {url: line.batcher for url, line in self._lines.items()}
            self.settler = Settler(
                clients.sqs, batchers, dlq_url, self.metrics, queue_url=queue_url, bulk_url=bulk_url
            )
            db = clients.mongo[s.mongo_db]
            self.checks = Checks.build(db, s, clients.sqs, queue_url)
            self.conflator = Conflator(db[LATEST], s.conflate_ms / 1000)
            pollers = [
                asyncio.create_task(self._poll(line, i))
                for line in self._lines.values()
                for i in range(len(line.receiving))
            ]
            heartbeat = asyncio.create_task(self._keep_visible())
            background = [
                asyncio.create_task(self._probe(clients, queue_url)),
                asyncio.create_task(self.switches.run()),
            ]
            if self.census:
                background.append(asyncio.create_task(self._census(clients).run()))
            if s.relay:  # the outbox relay rides along (FANOUT_RELAY; one process of a pool)
                from fanout.outbox.relay import Relay

                relay = Relay(s, clients.mongo, clients.sqs, self.registry)
                background.append(asyncio.create_task(relay.run(self._stop)))
            if s.cloudwatch_emf:
                emf = EmfEmitter(
                    self.registry,
                    namespace=s.cloudwatch_namespace,
                    interval_s=s.cloudwatch_interval_s,
                    only=None if self.census else set(CLOUDWATCH_METRICS) - SAMPLED_METRICS,
                )
                stack.callback(emf.flush)  # runs after the drain, so the last events are counted too
                background.append(asyncio.create_task(emf.run()))
            # Everything built so far lives as long as the process: frozen, a full collection no longer
            # walks it. Measured: gen-2 pauses of 30-45 ms under load fell to 2-4 ms.
            gc.collect()
            gc.freeze()
            log.info("worker_started", queue=s.queue_name, pollers=s.pollers)
            await self._stop.wait()
            # Phase 1: stop picking up work. Phase 2: let in-flight events finish within the budget,
            # then release the rest at once so another worker takes them. Visibility is kept throughout.
            await _cancel(background)
            await asyncio.gather(self._stop_pollers(pollers), self._drain())
            await _cancel([heartbeat])
        log.info("worker_stopped", **asdict(self.tally))
        return self.tally

    def _line(self, stack: AsyncExitStack, url: str, slots: int, per_receive: int, pollers: int) -> None:
        batcher = Batcher(self.clients.hot, url)
        batcher.start()
        stack.push_async_callback(batcher.close)
        self._lines[url] = Line(url, batcher, asyncio.Semaphore(slots), per_receive, [False] * pollers)

    # ---- one message

    async def _handle(self, msg: Received) -> None:
        """The per-message boundary: decide the message's fate, then carry it out."""
        try:
            try:
                decided = await self._decide(msg)
            except Exception as exc:  # a dependency failed mid-fan-out: never die on one message
                decided = fate.on_error(msg, exc, stopping=False, max_receives=self.settings.max_receives)
                self._log_error(msg, exc)
            await self.settler.apply(msg, decided)
        finally:
            self._held.pop(msg.receipt, None)
            self.metrics.events_in_flight.dec()
            self._lines[msg.queue_url].slots.release()

    async def _decide(self, msg: Received) -> fate.Fate:
        if msg.body is None:
            assert msg.invalid is not None
            log.warning("invalid_message", message_id=msg.message_id, reason=msg.invalid.reason)
        else:
            bind_event(msg.body.id, msg.body.type)  # this task's own context: its posts' lines name it too
        policy = policy_for(msg.body.type) if msg.body is not None else policy_for("")
        enabled = msg.body is None or self.switches.enabled(msg.body.type)
        step = fate.before(msg, policy, time.time(), self.settings.visibility_timeout_s, enabled=enabled)
        if isinstance(step, fate.Fate):
            return step
        assert msg.body is not None
        if msg.routing.check is not None and not await self.checks.confirm(msg.body, msg.routing.check):
            return fate.Fate("superseded")  # a typing stop or presence check that no longer holds
        if not await self.conflator.admit(msg, policy):  # hot counters: the latest value per key and window
            return fate.Fate("conflated")
        if split := await self._split(msg):
            return split
        deadline = time.monotonic() + step.budget_s
        bound = step.budget_s + 2 * self.settings.post_timeout_s + 10  # every post has its own timeout
        # The catalog's bulk types (counters, broadcasts), and every part of a split audience.
        bulk = policy.priority == "bulk" or msg.routing.shard is not None or msg.body.target.broadcast
        async with asyncio.timeout(bound):
            result = await self.deliverer.deliver(
                msg.body, deadline, msg.only, step.expires_at, shard=msg.routing.shard, bulk=bulk
            )
        self._observe(msg, result)
        return fate.after(msg, policy, result)

    async def _split(self, msg: Received) -> fate.Fate | None:
        """Shards for an audience larger than ``FANOUT_SHARD_SIZE``: every process of the pool then
        takes a part, each with its own visibility, retries and outcome."""
        assert msg.body is not None
        if msg.routing.is_part:
            return None
        target, size = msg.body.target, self.settings.shard_size
        parts = 0
        if target.broadcast or target.topics:
            count = await self.clients.store.audience(target, at_most=size * BUCKETS)
            parts = -(-count // size) if count > size else 0
        decided = fate.split(msg, parts, users_per_shard=size, buckets=BUCKETS)
        if decided is not None:
            log.info(
                "event_sharded", event_id=msg.body.id, event_type=msg.body.type, shards=len(decided.shards)
            )
        return decided

    def _observe(self, msg: Received, result: FanoutResult) -> None:
        assert msg.body is not None
        tally = self.tally
        tally.delivered += result.outcomes[Outcome.OK]
        tally.retried += result.retries
        tally.gone += result.outcomes[Outcome.GONE]
        for endpoint in result.reachable:
            self.readiness.endpoint_seen(endpoint, reachable=True)
        for endpoint in result.unreachable - result.reachable:
            self.readiness.endpoint_seen(endpoint, reachable=False)
        if result.failed and result.endpoint_down():
            log.warning("gateway_unreachable", event_id=msg.body.id, connections=len(result.failed))
        if result.refused:
            log.error(
                "post_forbidden",
                event_id=msg.body.id,
                connections=len(result.refused),
                endpoints=sorted(result.refused_endpoints)[:10],
            )
        shard = msg.routing.shard
        log.info(
            "event_done",
            event_id=msg.body.id,
            event_type=msg.body.type,
            outcome=result.event_outcome(),
            posts=result.attempted,
            failed=len(result.failed),
            round=msg.round,
            shard=f"{shard[0]}-{shard[1]}" if shard else None,
            pid=self.pid,
        )

    def _log_error(self, msg: Received, exc: Exception) -> None:
        if isinstance(exc, PyMongoError):
            self.readiness.mongo = False  # pollers pause until the probe sees MongoDB again
            log.warning("mongo_unavailable", message_id=msg.message_id, error=type(exc).__name__)
        elif isinstance(exc, TimeoutError):
            log.warning("fan_out_timed_out", message_id=msg.message_id)
        else:
            log.exception("handle_failed", message_id=msg.message_id, error=type(exc).__name__)

    def _census(self, clients: Clients) -> Census:
        s = self.settings
        db = clients.mongo[s.mongo_db]
        lease = Lease(db[LEASES], "census", ttl_s=3 * s.census_interval_s)
        lapsed = self.checks.lapsed if s.presence else None
        return Census(db[s.connections_collection], lease, self.metrics, s.census_interval_s, lapsed)

    def _skipped_record(self, doc: dict[str, Any]) -> None:
        """A malformed connection record: skip it, count it, name it by digest only."""
        self.metrics.records_skipped.inc()
        cid = doc.get("connectionId")
        log.warning("connection_record_invalid", connection=short_id(str(cid)) if cid else None)

    # ---- the loops

    async def _connect(self, clients: Clients) -> tuple[str, str | None, str]:
        """Resolve queue URLs and create indexes, retrying with backoff until both answer (or stop).

        The heartbeat ticks meanwhile: waiting for a slow dependency is alive (``/healthz``) but not ready.
        """
        s = self.settings
        delay = 0.5
        while True:
            self.readiness.heartbeat = time.monotonic()
            try:
                queue = await queues.aurl(clients.sqs, s)
                bulk = await queues.abulk(clients.sqs, s)
                dlq = await queues.aurl(clients.sqs, s, dlq=True)
                self.readiness.sqs = True
                await clients.store.ensure_indexes()
                await self.switches.refresh()  # switched-off domains stay off across a restart
                self.readiness.mongo = True
                return queue, bulk, dlq
            except Exception as exc:
                if self._stop.is_set():
                    raise
                log.warning("dependencies_unavailable", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _probe(self, clients: Clients, queue_url: str) -> None:
        """Refresh readiness every few seconds; a dependency that hangs is not ready within its timeout."""
        timeout_s = max(1.0, self.settings.mongo_timeout_ms / 1000)
        while True:
            self.readiness.heartbeat = time.monotonic()
            try:
                await clients.mongo.admin.command("ping")
                self.readiness.mongo = True
            except Exception:
                self.readiness.mongo = False
            try:
                async with asyncio.timeout(timeout_s):
                    await clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
                self.readiness.sqs = True
            except Exception:
                self.readiness.sqs = False
            self.metrics.ready.set(1 if self.readiness.ready else 0)
            self.metrics.posts_in_flight.set(self.deliverer.in_flight)
            await asyncio.sleep(PROBE_S)

    async def _poll(self, line: Line, slot: int) -> None:
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
                reply = await self.clients.hot.receive_message(
                    QueueUrl=line.url,
                    MaxNumberOfMessages=line.per_receive,
                    WaitTimeSeconds=s.receive_wait_s,
                    VisibilityTimeout=s.visibility_timeout_s,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
                )
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
            await self._start_all(line, [received.parse(m, line.url) for m in reply.get("Messages", [])])

    async def _start_all(self, line: Line, messages: list[Received]) -> None:
        """Hold every received message (its visibility is kept from now on), then start each in a slot."""
        now = time.monotonic()
        for msg in messages:
            self._held[msg.receipt] = (line, now)
            if msg.sent_at is not None and not msg.routing.is_part:  # worker-written parts wait on purpose
                self.metrics.queue_lag.observe(max(0.0, time.time() - msg.sent_at))
        for i, msg in enumerate(messages):
            await line.slots.acquire()
            if self._stop.is_set():  # stopping: hand the rest straight back to the queue
                line.slots.release()
                rest = [m.receipt for m in messages[i:]]
                for receipt in rest:
                    self._held.pop(receipt, None)
                await self.settler.release(line.url, rest)
                return
            self.settler.tally.received += 1
            self.metrics.events_in_flight.inc()
            task = asyncio.create_task(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _stop_pollers(self, pollers: list[asyncio.Task[None]]) -> None:
        """Let receives already at SQS come back, then stop. SQS still hands messages to a long poll
        whose caller has gone, and they would stay invisible for the visibility timeout; a receive
        that returns after the stop releases what it brought instead."""
        receiving = [r for line in self._lines.values() for r in line.receiving]
        for task, open_ in zip(pollers, receiving, strict=True):
            if not open_:
                task.cancel()
        s = self.settings
        _, late = await asyncio.wait(pollers, timeout=min(s.receive_wait_s + 5, s.shutdown_budget_s))
        await _cancel(list(late))
        await asyncio.gather(*pollers, return_exceptions=True)

    async def _keep_visible(self) -> None:
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

    async def _drain(self) -> None:
        """Wait for in-flight events within the budget, then cancel and release the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_budget_s)
            unfinished = _by_line(list(self._held.items()))
            await _cancel(list(pending))
            for line, receipts in unfinished:
                await self.settler.release(line.url, receipts)
        for line in self._lines.values():
            await line.batcher.flush()


def _by_line(held: Iterable[tuple[str, tuple[Line, float]]]) -> list[tuple[Line, list[str]]]:
    """Receipts grouped by the line they came from."""
    groups: dict[int, tuple[Line, list[str]]] = {}
    for receipt, (line, _) in held:
        groups.setdefault(id(line), (line, []))[1].append(receipt)
    return list(groups.values())


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
