"""One message's decision: gather what its fate depends on and return it as a ``fate.Fate``.

The rules are the pure functions of ``fate``; this module asks the switches, the checks, the conflator
and the store what they need, runs the fan-out itself, and observes what it did (the tally, readiness
per endpoint, the summary, the ``event_done`` line). Receiving, holding and settling are the worker's
(``consumer.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fanout.catalog import ACCESS_REVOKED, metric_label, policy_for
from fanout.coalesce import Coalescer
from fanout.config import Settings
from fanout.envelope import QueueBody
from fanout.flags import LiveSwitches
from fanout.gateway.client import Outcome
from fanout.health import Readiness
from fanout.history import WRITE_BATCH
from fanout.logging import bind_event, get_logger
from fanout.metrics import Metrics
from fanout.store import BUCKETS
from fanout.store.resolve import USER_CHUNK
from fanout.worker import fate
from fanout.worker.checks import Checks
from fanout.worker.clients import Clients
from fanout.worker.conflate import Conflator
from fanout.worker.delivery import Deliverer
from fanout.worker.received import Received
from fanout.worker.replay import replay
from fanout.worker.result import FanoutResult
from fanout.worker.settle import Tally
from fanout.worker.summary import Summary

log = get_logger("fanout.worker")


class Decider:
    """Decides the fate of one message after another; one instance per worker process."""

    def __init__(
        self,
        settings: Settings,
        clients: Clients,
        deliverer: Deliverer,
        switches: LiveSwitches,
        checks: Checks,
        conflator: Conflator,
        *,
        metrics: Metrics,
        readiness: Readiness,
        summary: Summary,
        tally: Tally,
        pid: int,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.deliverer = deliverer
        self.switches = switches
        self.checks = checks
        self.conflator = conflator
        self.metrics = metrics
        self.readiness = readiness
        self.summary = summary
        self.tally = tally
        self.pid = pid
        # The common event (a few users, kept in the history) has its history write and its lookup in one
        # merged call: the writes of the events that arrive together, then one query for their users.
        # A call carries at most USER_CHUNK users and WRITE_BATCH events (each weighs at least
        # USER_CHUNK // WRITE_BATCH): a full call goes at once, beside the one in flight.
        self._plain_users = min(USER_CHUNK, settings.shard_size)
        least = USER_CHUNK // WRITE_BATCH
        self._kept_and_found: Coalescer[tuple[QueueBody, float], list[dict[str, Any]]] = Coalescer(
            self._keep_then_find, most=USER_CHUNK, weigh=lambda r: max(least, len(r[0].target.user_ids))
        )

    async def decide(self, msg: Received, release: Callable[[], None] | None = None) -> fate.Fate:
        """The message's fate; ``release`` hands its ordering key's turn on once the posts answered."""
        if msg.body is None:
            assert msg.invalid is not None
            log.warning("invalid_message", message_id=msg.message_id, reason=msg.invalid.reason)
        else:
            bind_event(msg.body.id, msg.body.type)  # this task's own context: its posts' lines name it too
            if msg.body.type == ACCESS_REVOKED:  # rare: this comparison is all that other events pay
                await self._revoke(msg.body)
        policy = policy_for(msg.body.type) if msg.body is not None else policy_for("")
        enabled = msg.body is None or self.switches.enabled(msg.body.type)
        step = fate.before(msg, policy, time.time(), self.settings.visibility_timeout_s, enabled=enabled)
        if isinstance(step, fate.Fate):
            return step
        assert msg.body is not None
        if msg.routing.replay is not None:
            return await replay(
                msg,
                self.clients,
                self.deliverer,
                step,
                self.switches.enabled,
                max_receives=self.settings.max_receives,
                outage_delay_s=self.settings.outage_delay_s,
            )
        if wait := fate.due_in(msg, time.time(), self.settings.outage_delay_s):  # FIFO: held until due
            return fate.Fate("released", delete=False, release_after_s=wait)
        if msg.routing.check is not None and not await self.checks.confirm(msg.body, msg.routing.check):
            return fate.Fate("superseded")  # a typing stop or presence check that no longer holds
        admitted = await self.conflator.admit(msg, policy)  # hot counters: the latest value per key, window
        if not admitted:
            return fate.Fate("conflated")
        # The history write comes before the lookup (and the shards'): history.py.
        found = None  # the records of its users, when read with its history write
        if not msg.routing.is_kept and self._plain(msg.body):  # never split: a few users and nothing else
            found = await self._kept_and_found.submit((msg.body, step.expires_at))
        else:
            if not msg.routing.is_kept:
                await self._keep(msg.body, step.expires_at)
            if split := await self._split(msg):
                return split
        deadline = time.monotonic() + step.budget_s
        bound = step.budget_s + 2 * self.settings.post_timeout_s + 10  # every post has its own timeout
        # The catalog's bulk types (counters, broadcasts), and every part of a split audience.
        bulk = policy.priority == "bulk" or msg.routing.shard is not None or msg.body.target.broadcast
        async with asyncio.timeout(bound):
            result = await self.deliverer.deliver(
                msg.body,
                deadline,
                msg.only,
                step.expires_at,
                shard=msg.routing.shard,
                bulk=bulk,
                on_answered=release,
                found=found,
                claim=None if admitted is True else admitted,
            )
        self._observe(msg, result)
        return fate.after(msg, policy, result, self.settings.outage_delay_s)

    async def _revoke(self, body: QueueBody) -> None:
        """Take the revoked topics off the users' records before anything is posted, whatever becomes of
        the frame itself (switched off, expired, a later round): every lookup from now on misses them.
        Idempotent, so a remainder or a redrive doing it again changes nothing."""
        users, topics = body.target.user_ids, list(body.payload["topics"])
        changed = await self.clients.store.revoke(users, topics)
        log.info("topics_revoked", event_id=body.id, users=len(users), topics=len(topics), records=changed)

    async def _keep(self, body: QueueBody, expires_at: float) -> None:
        """The event's history write. One that fails is logged and counted and never fails the delivery:
        a resume that needed the event gets a resync instead (or, for an unkeyed event, misses it)."""
        history = self.clients.history
        if not history.enabled:
            return
        try:
            await history.record(body, expires_at)
        except Exception as exc:  # the history is best effort: delivery goes on without it
            self._not_kept(exc)

    def _not_kept(self, exc: BaseException) -> None:
        log.warning("history_write_failed", error=type(exc).__name__)  # its text may quote the frame
        self.metrics.history_write_failures.inc()

    def _plain(self, body: QueueBody) -> bool:
        """A kept event for a few users and nothing else: its write and lookup can go in one merged call."""
        target = body.target
        return (
            self.clients.history.enabled
            and 0 < len(target.user_ids) <= self._plain_users
            and not (target.topics or target.connection_ids or target.broadcast)
        )

    async def _keep_then_find(self, kept: list[tuple[QueueBody, float]]) -> list[list[dict[str, Any]]]:
        """The history writes of some plain events, then one lookup of all their users (``_keep``'s
        rules: a failed write is logged and counted, and the lookup goes on)."""
        history = self.clients.history
        docs = []
        for body, at in kept:
            try:
                docs.append(history.document(body, at))
            except Exception as exc:  # this event alone goes unkept: the others' writes go on
                self._not_kept(exc)
        try:
            failures = await history.write_many(docs)
        except Exception as exc:  # every event of the call went unkept, each counted as before
            failures = [exc] * len(docs)
        for failed in failures:
            if failed is not None:
                self._not_kept(failed)
        started = time.perf_counter()
        found = await self.clients.store.find_users([body.target.user_ids for body, _ in kept])
        latency = self.metrics.lookup_latency
        took = time.perf_counter() - started
        for _ in kept:
            latency.observe(took)  # each event waited for it, as for a lookup of its own
        return found

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
        tally.delivered += result.outcomes.get(Outcome.OK, 0)
        tally.retried += result.retries
        tally.gone += result.outcomes.get(Outcome.GONE, 0)
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
        shard, outcome, posts = msg.routing.shard, result.event_outcome(), result.attempted
        self.summary.add(metric_label(msg.body.type), outcome, posts, len(result.failed))
        # The plain case is counted in the summary line: its own line only at debug (bench/README.md).
        plain = outcome == "delivered" and shard is None and msg.round == 0
        (log.debug if plain else log.info)(
            "event_done",
            event_id=msg.body.id,
            event_type=msg.body.type,
            outcome=outcome,
            posts=posts,
            failed=len(result.failed),
            round=msg.round,
            shard=f"{shard[0]}-{shard[1]}" if shard else None,
            pid=self.pid,
        )
