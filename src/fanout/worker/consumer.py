"""The worker: long-polls SQS, fans each event out, and ends every message in an explicit outcome.

Read ``Worker.main`` top to bottom for the lifecycle. A message is received and held by the intake
(``intake.Intake``), parsed once where it is received (``received.parse``), its fate decided
(``decide.Decider``, by the pure functions of ``fate``), and carried out in one place
(``settle.Settler``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import time
from asyncio import FIRST_COMPLETED
from contextlib import AsyncExitStack
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.errors import PyMongoError

from fanout import queues
from fanout.config import Settings
from fanout.emf import CLOUDWATCH_METRICS, SAMPLED_METRICS, EmfEmitter
from fanout.errors import WorkerFailed
from fanout.flags import FlagStore, LiveSwitches
from fanout.health import Readiness, health_app, serve
from fanout.logging import get_logger, short_id
from fanout.metrics import Metrics
from fanout.worker import fate
from fanout.worker.census import LEASES, Census, Lease
from fanout.worker.checks import Checks
from fanout.worker.clients import Clients, open_clients
from fanout.worker.conflate import LATEST, Conflator
from fanout.worker.decide import Decider
from fanout.worker.delivery import Deliverer
from fanout.worker.intake import Intake, Line
from fanout.worker.limiter import AdaptiveLimiter
from fanout.worker.ordering import KeyTurns, key_of, seq_of
from fanout.worker.received import Received
from fanout.worker.settle import Settler, Tally
from fanout.worker.stopping import LAST_CALLS_S, cancel_all
from fanout.worker.summary import Summary

log = get_logger("fanout.worker")


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
        self.readiness = Readiness(stall_s=settings.stall_s)
        self._stop = asyncio.Event()
        self._failed: str | None = None  # the essential task that ended on an error
        self._tasks: set[asyncio.Task[None]] = set()
        self._turns = KeyTurns()  # per ordering key: one event at a time, lowest seq first
        self.pid = os.getpid()
        self.summary = Summary(self.pid)

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
            background: list[asyncio.Task[None]] = []
            if s.cloudwatch_emf:  # from the start: a worker that cannot connect reports Ready 0 meanwhile
                emf = EmfEmitter(
                    self.registry,
                    namespace=s.cloudwatch_namespace,
                    interval_s=s.cloudwatch_interval_s,
                    only=None if self.census else set(CLOUDWATCH_METRICS) - SAMPLED_METRICS,
                )
                stack.callback(emf.flush)  # runs after the drain, so the last events are counted too
                background.append(asyncio.create_task(emf.run()))
            urls = await self._connect(clients)
            if urls is None:  # stopped before SQS and MongoDB answered: nothing was received
                await cancel_all(background)
                log.info("worker_stopped", **asdict(Tally()))
                return Tally()
            queue_url, bulk_url, dlq_url = urls
            self.intake = intake = Intake(s, clients.hot, self.readiness, self._stop)
            intake.line(stack, queue_url, s.max_events_in_flight, 10, s.pollers)
            if bulk_url:
                intake.line(stack, bulk_url, s.bulk_in_flight, 1, 1)
            batchers = {url: line.batcher for url, line in intake.lines.items()}
            self.settler = Settler(
                clients.sqs, batchers, dlq_url, self.metrics, queue_url=queue_url, bulk_url=bulk_url
            )
            db = clients.mongo[s.mongo_db]
            self.checks = Checks.build(db, s, clients.sqs, queue_url)
            self.conflator = Conflator(db[LATEST], s.conflate_ms / 1000)
            self.decider = Decider(
                s,
                clients,
                self.deliverer,
                self.switches,
                self.checks,
                self.conflator,
                metrics=self.metrics,
                readiness=self.readiness,
                summary=self.summary,
                tally=self.settler.tally,
                pid=self.pid,
            )
            pollers = intake.pollers(self._start_all)
            heartbeat = asyncio.create_task(intake.keep_visible())
            probe = asyncio.create_task(self._probe(clients, queue_url))
            for task in (*pollers, heartbeat, probe):  # without one, a worker takes no work yet looks alive
                task.add_done_callback(self._essential_ended)
            background += [
                probe,
                asyncio.create_task(self.switches.run()),
                asyncio.create_task(self.summary.run(s.log_summary_s)),
            ]
            if self.census:
                background.append(asyncio.create_task(self._census(clients).run()))
            if s.relay:  # the outbox relay rides along (FANOUT_RELAY; one process of a pool)
                from fanout.outbox.relay import Relay

                relay = Relay(s, clients.mongo, clients.sqs, self.registry)
                background.append(asyncio.create_task(relay.run(self._stop)))
            # Everything built so far lives as long as the process: frozen, a full collection no longer
            # walks it. Measured: gen-2 pauses of 30-45 ms under load fell to 2-4 ms.
            gc.collect()
            gc.freeze()
            log.info("worker_started", queue=s.queue_name, pollers=s.pollers)
            await self._stop.wait()
            # Phase 1: stop picking up work. Phase 2: let in-flight events finish within the budget,
            # then release the rest at once so another worker takes them. Visibility is kept throughout.
            await cancel_all(background)
            await asyncio.gather(intake.stop_pollers(pollers), self._drain())
            self.metrics.posts_in_flight.set(0)  # the probe that samples it stopped with the rest
            await cancel_all([heartbeat])
            self.summary.flush()
        log.info("worker_stopped", **asdict(self.tally))
        if self._failed is not None:
            raise WorkerFailed(f"the worker's {self._failed} task failed; see worker_task_failed")
        return self.tally

    def _essential_ended(self, task: asyncio.Task[None]) -> None:
        """A poller, the heartbeat or the probe ended while the worker runs: only a bug does that. Stop
        (the drain releases what is held) and fail, rather than run on taking no work."""
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        self._failed = task.get_coro().__qualname__  # type: ignore[union-attr]
        log.error(
            "worker_task_failed", task=self._failed, error=type(exc).__name__ if exc else None, exc_info=exc
        )
        self._stop.set()

    # ---- one message

    async def _handle(self, msg: Received, turn: asyncio.Future[None] | None) -> None:
        """The per-message boundary: wait for its key's turn, decide its fate, then carry it out."""
        release = functools.partial(self._turns.leave, key_of(msg) or "", turn) if turn is not None else None
        try:
            try:
                if turn is not None:
                    await turn
                decided = await self.decider.decide(msg, release)
            except Exception as exc:  # a dependency failed mid-fan-out: never die on one message
                decided = fate.on_error(msg, exc, stopping=False, max_receives=self.settings.max_receives)
                self._log_error(msg, exc)
            try:
                await self.settler.apply(msg, decided)
            except Exception as exc:  # SQS refused what it leaves (a remainder, shards, a dead letter)
                log.warning("settle_failed", message_id=msg.message_id, error=type(exc).__name__)
                # As for a failed fan-out: released with a backoff, dead-lettered with a reason on its
                # last receive, rather than back after its visibility timeout each time and moved by SQS.
                retry = fate.on_error(msg, exc, stopping=False, max_receives=self.settings.max_receives)
                try:
                    await self.settler.apply(msg, retry)
                except Exception as again:  # SQS fails this too: back after its visibility timeout
                    log.warning("settle_failed", message_id=msg.message_id, error=type(again).__name__)
        finally:
            if release is not None:
                release()  # at the latest: usually the key's next event started once the posts answered
            self.intake.drop(msg.receipt)
            self.metrics.events_in_flight.dec()
            self.intake.lines[msg.queue_url].slots.release()

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

    # ---- the dependencies

    async def _connect(self, clients: Clients) -> tuple[str, str | None, str] | None:
        """Resolve queue URLs and create indexes, retrying with backoff until both answer; None once
        stopped.

        The heartbeat ticks meanwhile, also while a call hangs (an SQS that never answers holds one for
        its read timeout times botocore's attempts, over a minute): waiting for a slow dependency is
        alive (``/healthz``) but not ready. A SIGTERM ends the wait at once.
        """
        delay = 0.5
        stopped = asyncio.create_task(self._stop.wait())
        try:
            while True:
                attempt = asyncio.create_task(self._connect_once(clients))
                while not (attempt.done() or stopped.done()):
                    self.readiness.heartbeat = time.monotonic()
                    await asyncio.wait(
                        {attempt, stopped}, timeout=self.settings.probe_s, return_when=FIRST_COMPLETED
                    )
                if stopped.done():
                    await cancel_all([attempt])
                    return None
                if (exc := attempt.exception()) is None:
                    return attempt.result()
                log.warning("dependencies_unavailable", error=type(exc).__name__, retry_in=delay)
                await asyncio.wait({stopped}, timeout=delay)
                delay = min(delay * 2, 10)
        finally:
            stopped.cancel()

    async def _connect_once(self, clients: Clients) -> tuple[str, str | None, str]:
        s = self.settings
        queue = await queues.aurl(clients.sqs, s)
        bulk = await queues.abulk(clients.sqs, s)
        dlq = await queues.aurl(clients.sqs, s, dlq=True)
        self.readiness.sqs = True
        await clients.store.ensure_indexes()
        await clients.history.ensure_indexes()
        await self.switches.refresh()  # switched-off domains stay off across a restart
        self.readiness.mongo = True
        return queue, bulk, dlq

    async def _probe(self, clients: Clients, queue_url: str) -> None:
        """Refresh readiness every ``probe_s``; a dependency that hangs is not ready within its timeout."""
        timeout_s = max(1.0, self.settings.mongo_timeout_ms / 1000)
        events = self.intake.lines[queue_url]  # the events queue's line: the bulk queue's says nothing of it
        answered = events.answered
        was_ready = True  # the worker has just connected to both
        while True:
            self.readiness.heartbeat = time.monotonic()
            try:
                await clients.mongo.admin.command("ping")
                self.readiness.mongo = True
            except Exception:
                self.readiness.mongo = False
            # A receive of the events queue answered since the last round already told, unless a poller
            # has failed since: under load the probe skips its aiobotocore call (about 1 ms of CPU).
            if events.answered == answered or not self.readiness.sqs:
                attributes = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
                try:
                    async with asyncio.timeout(timeout_s):
                        await attributes
                    self.readiness.sqs = True
                except Exception:
                    self.readiness.sqs = False
            answered = events.answered
            was_ready = self._note_readiness(was_ready)
            self.metrics.ready.set(1 if self.readiness.ready else 0)
            self.metrics.posts_in_flight.set(self.deliverer.in_flight)
            await asyncio.sleep(self.settings.probe_s)

    def _note_readiness(self, was_ready: bool) -> bool:
        """Log ``readiness_changed`` (which dependency) when readiness flips; the readiness now."""
        ready, state = self.readiness.check()
        if ready != was_ready:
            (log.info if ready else log.warning)("readiness_changed", **state, ready=ready)
        return ready

    # ---- starting and draining

    async def _start_all(self, line: Line, messages: list[Received]) -> None:
        """Hold every received message (its visibility is kept from now on), then start each in a slot,
        those of one ordering key in ``seq`` order."""
        messages.sort(key=seq_of)
        self.intake.hold(line, [msg.receipt for msg in messages])
        for msg in messages:
            if msg.sent_at is not None and not msg.routing.is_part:  # worker-written parts wait on purpose
                self.metrics.queue_lag.observe(max(0.0, time.time() - msg.sent_at))
        for i, msg in enumerate(messages):
            await line.slots.acquire()
            if self._stop.is_set():  # stopping: hand the rest straight back to the queue
                line.slots.release()
                rest = [m.receipt for m in messages[i:]]
                for receipt in rest:
                    self.intake.drop(receipt)
                await self.settler.release(line.url, rest)
                return
            self.settler.tally.received += 1
            self.metrics.events_in_flight.inc()
            key = key_of(msg)
            # A conflated counter takes no turn: it would wait behind the values that conflation drops.
            if key and msg.body and not self.conflator.conflates(msg.body):
                turn: asyncio.Future[None] | None = self._turns.enter(key, msg.body.meta.seq)
            else:
                turn = None
            task = asyncio.create_task(self._handle(msg, turn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """Wait for in-flight events within the budget, then cancel and release the rest, and send the
        last deletes, those calls within ``LAST_CALLS_S``."""
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.shutdown_budget_s)
        unfinished = self.intake.held()  # before the cancelled drop theirs; a batch held, never started, too
        await cancel_all(list(pending))
        try:
            async with asyncio.timeout(LAST_CALLS_S):
                for line, receipts in unfinished:
                    await self.settler.release(line.url, receipts)
                for line in self.intake.lines.values():
                    await line.batcher.close()
        except TimeoutError:  # SQS hangs: the messages come back after their visibility timeout
            deletes = sum(line.batcher.pending for line in self.intake.lines.values())
            log.warning("last_calls_timed_out", held=sum(len(r) for _, r in unfinished), deletes=deletes)
