"""Per-key order within one process: events that share an ordering key are fanned out one after another,
the lowest ``seq`` waiting first.

An event takes its place when it is received (after its slot, before any await), so the events of one
receive, or those that arrive while an earlier one of the key is still being fanned out, go out in
``seq`` order. The turn passes on once every connection of the event has answered its first post: a
retry (a throttled post, a dead connection's backoff) may land after the next event of the key, which
the client puts back in order by ``seq``, rather than hold every later event of the key behind it
(measured: a stale connection's retries held a key to two events a second). Events without a key never
wait and cost nothing here. Across processes a standard queue promises no order: a FIFO queue does
(its message group is the key, and SQS hands a group out one batch at a time).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from fanout.worker.received import Received

_Waiter = tuple[int, int, asyncio.Future[None]]  # (seq, arrival, granted)


class KeyTurns:
    """Turns per ordering key; ``enter`` returns a future that completes when the event's turn comes,
    and every entered event must ``leave`` once its turn is over (or once it gives up waiting)."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[_Waiter]] = {}
        self._busy: dict[str, asyncio.Future[None]] = {}  # key -> the turn now running
        self._arrival = itertools.count()

    def __len__(self) -> int:
        """Keys with an event running or waiting (memory stays bounded by the events in flight)."""
        return len(self._busy | self._waiting.keys())

    def enter(self, key: str, seq: int | None) -> asyncio.Future[None]:
        """Queue an event of ``key``. The turn is granted on the next loop turn at the earliest, so every
        event entered before then competes by ``seq`` (an event without one, by arrival)."""
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        heapq.heappush(
            self._waiting.setdefault(key, []), (seq if seq is not None else -1, next(self._arrival), granted)
        )
        if key not in self._busy:
            loop.call_soon(self._grant, key)
        return granted

    def leave(self, key: str, granted: asyncio.Future[None]) -> None:
        """End an event's turn (or its wait, when it gave up before its turn came); a second call for the
        same turn does nothing."""
        if self._busy.get(key) is granted:
            del self._busy[key]
            self._grant(key)
        elif not granted.done():
            granted.cancel()  # still queued: the grant skips it

    def _grant(self, key: str) -> None:
        if key in self._busy:
            return
        heap = self._waiting.get(key, [])
        while heap:
            _, _, granted = heapq.heappop(heap)
            if not granted.done():
                self._busy[key] = granted
                granted.set_result(None)
                break
        if not heap:
            self._waiting.pop(key, None)


def key_of(msg: Received) -> str | None:
    """The ordering key an event waits its turn on: none for the parts the worker writes (a remainder
    waits on purpose; a broadcast's shards run side by side) or a replay."""
    if msg.body is None or msg.routing.is_part:
        return None
    return msg.body.meta.ordering_key


def seq_of(msg: Received) -> int:
    """The event's ``seq``, -1 without one: a receive is started in this order."""
    seq = msg.body.meta.seq if msg.body is not None else None
    return seq if seq is not None else -1
