"""Group commit for the hot path's MongoDB round trips: what arrives while a call is in flight shares
the next call.

Each event of a receive asks for its history write and its users' records; one call per receive already
costs about what one per event would (pymongo spends most of a call's CPU around the call, not on its
documents). With one call of a kind in flight at a time, the requests of the receives that come in
meanwhile wait for it and then go together, so under load a call carries several receives and at rest
a request goes at the end of its loop turn as before. A full batch never waits. The price: while a
call stalls (MongoDB failing over, up to ``FANOUT_MONGO_TIMEOUT_MS``), the requests of later receives
wait for it rather than each sending a call of their own into the stall. Used by
``store.resolve`` (user lookups) and ``history`` (history writes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: One call's answer: a result (or the exception that failed it) per request, in order.
Call = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Merges requests into batch calls: one partial batch in flight at a time, full ones at once."""

    def __init__(self, call: Call[T, R], *, most: int, weigh: Callable[[T], int] = lambda _: 1) -> None:
        self._call = call
        self._most = most  # a batch's weight at most (e.g. user ids per $in query)
        self._weigh = weigh
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._weight = 0
        self._kicked = False
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, request: T) -> asyncio.Future[R]:
        """The request's answer, once the call that carries it returns."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        weight = self._weigh(request)
        if self._pending and self._weight + weight > self._most:
            self._start()  # a full batch goes at once, whatever is in flight
        self._pending.append((request, future))
        self._weight += weight
        if self._weight >= self._most:
            self._start()  # full: it goes at once
        elif not self._running and not self._kicked:
            self._kicked = True  # at the end of this loop turn: the rest of the receive joins it
            loop.call_soon(self._kick)
        return future

    def _kick(self) -> None:
        self._kicked = False
        if self._pending and not self._running:
            self._start()

    def _start(self) -> None:
        batch, self._pending, self._weight = self._pending, [], 0
        batch = [(request, future) for request, future in batch if not future.done()]  # not given up
        if not batch:
            return
        task = asyncio.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if task.cancelled():  # the loop is shutting down: start nothing more
            return
        if self._pending and not self._running and not self._kicked:
            self._start()  # what waited for this call

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            answers = await self._call([request for request, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to {len(batch)} requests")
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():  # its waiter was cancelled
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()  # no answer will come: the waiters are cancelled, not failed
            raise
        except Exception as exc:  # every waiter gets an answer, whatever happened
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
