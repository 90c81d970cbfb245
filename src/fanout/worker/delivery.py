"""Fan-out of one parsed event: resolve its connections, hand a post for each to the lanes
(``lanes.py``), and ask a connection that does not speak the event's payload version to upgrade."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ulid import ULID

from fanout.catalog import metric_label
from fanout.envelope import QueueBody, now_iso
from fanout.gateway.client import ManagementClient, Outcome
from fanout.logging import get_logger
from fanout.metrics import Metrics
from fanout.store import Connection, ConnectionStore
from fanout.worker.conflate import Claim
from fanout.worker.lanes import Event, Lanes
from fanout.worker.limiter import AdaptiveLimiter
from fanout.worker.result import FanoutResult

log = get_logger("fanout.delivery")

_UNSUPPORTED = Outcome.UNSUPPORTED_VERSION
RECONNECT = "system.reconnect"


class Deliverer:
    """Posts events to their connections through the post lanes (``lanes.Lanes``), with paced retries
    and safe pruning; one instance per worker process."""

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
        self._metrics = metrics
        self._lanes = Lanes(
            store,
            client,
            metrics,
            max_posts_in_flight=max_posts_in_flight,
            attempts=attempts,
            limiter=limiter,
        )

    @property
    def in_flight(self) -> int:
        """Posts awaiting an answer; the worker samples it into a gauge."""
        return self._lanes.in_flight

    async def close(self) -> None:
        """Stop the lanes (after the worker's drain: no event is waiting on them any more)."""
        await self._lanes.close()

    async def connections(
        self,
        body: QueueBody,
        only: tuple[str, ...] | None,
        shard: tuple[int, int] | None = None,
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
        on_answered: Callable[[], None] | None = None,
        found: list[dict[str, Any]] | None = None,
        claim: Claim | None = None,
    ) -> FanoutResult:
        """Post ``body``'s frame once to each of its connections: posts and retries until ``deadline``
        (monotonic; a post still waiting then is left to a later round), no post once the event
        ``expires_at`` (epoch seconds), even if it waited behind other work.
        ``bulk`` posts go through the bulk lanes. A connection that does not speak the event's payload
        version gets no post (``unsupported_version``) but, once, a ``system.reconnect`` asking it to
        upgrade. ``on_answered`` is called once every connection has answered its first post (before
        any retry), or when there was none to post to. ``found``: the records of the target's users, read
        already (``ConnectionStore.find_users``). ``claim``: a conflated value's (``Conflator.admit``), asked
        before each retry of a post whether a newer value of its key was claimed since."""
        lanes = self._lanes
        lanes.start()
        jobs = lanes.bulk if bulk else lanes.jobs
        frame = body.client_frame
        event = Event(
            frame,
            hashlib.sha256(frame).hexdigest(),
            metric_label(body.type),
            body.sent_at_epoch,
            deadline,
            expires_at,
            FanoutResult(),
            asyncio.get_running_loop().create_future(),
            on_answered=on_answered,
            claim=claim,
        )
        version = body.payload_version
        upgrade: Event | None = None  # system.reconnect to connections that do not speak the version

        async def put(batch: list[Connection]) -> None:
            nonlocal upgrade
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
                else:
                    event.unanswered += 1
                target.pending += 1
                await jobs.put((conn, target))  # waits only when every lane of its kind is busy

        try:
            if found is not None:  # its users' records, read with its history write: no lookup of its own
                await put(self._store.of_users(found, body.target))
            else:
                async for batch in self.connections(body, only, shard):
                    await put(batch)
            event.answered_one()
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
            lanes.count(upgrade)
        lanes.count(event)
        return event.result

    async def post_frame(
        self, conn: Connection, event_type: str, frame: bytes, deadline: float, expires_at: float
    ) -> FanoutResult:
        """Post one frame to one connection through the lanes, with its retries (a replay's step)."""
        self._lanes.start()
        label = metric_label(event_type)
        # sent_at is now: for a replayed event, delivery latency measures the replay, not the event's age
        event = Event(frame, hashlib.sha256(frame).hexdigest(), label, time.time(), deadline, expires_at,
                       FanoutResult(), asyncio.get_running_loop().create_future())  # fmt: skip
        event.pending += 1
        try:
            await self._lanes.jobs.put((conn, event))
            event.finish_one()
            await event.done
        except BaseException:
            event.stop()
            raise
        self._lanes.count(event)
        return event.result

    def _upgrade(self, body: QueueBody, version: int, event: Event) -> Event:
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
        return Event(
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
