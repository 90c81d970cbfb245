"""Group commit: requests share calls, each gets its own answer, and a failure reaches every waiter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from fanout.coalesce import Coalescer


class Doubler:
    """A batch call that answers each number with its double, a negative one with an error, and can be
    held open to stand for a slow round trip."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, batch: list[int]) -> Sequence[int | BaseException]:
        self.calls.append(batch)
        await self.gate.wait()
        return [ValueError(n) if n < 0 else 2 * n for n in batch]


async def test_requests_of_one_loop_turn_share_one_call_and_keep_their_answers() -> None:
    """Ten requests made together go in one call; each future gets its own request's answer."""
    call = Doubler()
    coalescer = Coalescer(call, most=100)
    answers = await asyncio.gather(*(coalescer.submit(n) for n in range(10)))
    assert [list(range(10))] == call.calls
    assert [2 * n for n in range(10)] == answers


async def test_requests_made_during_a_call_wait_for_it_and_then_go_together() -> None:
    """While a call is in flight, two more rounds of requests wait, then share one call."""
    call = Doubler()
    call.gate.clear()
    coalescer = Coalescer(call, most=100)
    first = [coalescer.submit(n) for n in range(3)]
    await asyncio.sleep(0.01)
    assert [[0, 1, 2]] == call.calls
    second = [coalescer.submit(n) for n in range(3, 6)]
    await asyncio.sleep(0.01)
    third = [coalescer.submit(n) for n in range(6, 9)]
    await asyncio.sleep(0.01)
    assert 1 == len(call.calls)  # nothing else went while the first call was open
    call.gate.set()
    assert [2 * n for n in range(9)] == await asyncio.gather(*first, *second, *third)
    assert [[0, 1, 2], [3, 4, 5, 6, 7, 8]] == call.calls


async def test_a_full_batch_goes_at_once() -> None:
    """A request that would overfill the pending batch sends that batch at once, even while another
    call is open; a partial batch waits for the open call."""
    call = Doubler()
    call.gate.clear()
    coalescer: Coalescer[list[int], int] = Coalescer(lambda b: call([sum(x) for x in b]), most=5, weigh=len)
    waiting = [coalescer.submit([1, 1, 1]), coalescer.submit([1, 1])]
    await asyncio.sleep(0.01)
    assert [[3, 2]] == call.calls
    waiting += [coalescer.submit([1, 1, 1]), coalescer.submit([1, 1, 1])]  # the second overfills the first
    await asyncio.sleep(0.01)
    assert [[3, 2], [3]] == call.calls  # the full one went beside the open call; [3] still waits
    call.gate.set()
    assert [6, 4, 6, 6] == await asyncio.gather(*waiting)
    assert [[3, 2], [3], [3]] == call.calls


async def test_a_failed_request_fails_alone_and_a_failed_call_fails_every_waiter() -> None:
    """An error answered for one request reaches only its future; an exception from the call reaches all."""
    call = Doubler()
    coalescer = Coalescer(call, most=100)
    ok, bad = coalescer.submit(1), coalescer.submit(-1)
    assert 2 == await ok
    with pytest.raises(ValueError, match="-1"):
        await bad

    async def broken(batch: list[int]) -> Sequence[int]:
        raise ConnectionError("down")

    failing = Coalescer(broken, most=100)
    futures = [failing.submit(n) for n in range(3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_cancelled_waiter_leaves_the_others_their_answers() -> None:
    """A waiter that gives up (its event was cancelled) does not break the call for the rest."""
    call = Doubler()
    call.gate.clear()
    coalescer = Coalescer(call, most=100)
    gone, kept = coalescer.submit(1), coalescer.submit(2)
    await asyncio.sleep(0.01)
    gone.cancel()
    call.gate.set()
    assert 4 == await kept
    assert gone.cancelled()


async def test_a_batch_that_is_exactly_full_goes_at_once() -> None:
    """A request that fills the batch to its weight starts a call at once, beside the open one."""
    call = Doubler()
    call.gate.clear()
    coalescer: Coalescer[list[int], int] = Coalescer(lambda b: call([sum(x) for x in b]), most=5, weigh=len)
    first = coalescer.submit([1])
    await asyncio.sleep(0.01)
    full = coalescer.submit([1] * 5)
    await asyncio.sleep(0.01)
    assert [[1], [5]] == call.calls
    call.gate.set()
    assert [2, 10] == await asyncio.gather(first, full)


async def test_a_call_answering_the_wrong_number_fails_every_waiter() -> None:
    """A call that returns fewer answers than requests fails them all rather than leave one waiting."""

    async def short(batch: list[int]) -> Sequence[int]:
        return batch[:-1]

    coalescer = Coalescer(short, most=100)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_cancelled_call_cancels_its_waiters_and_starts_nothing_more() -> None:
    """When the task running a call is cancelled (the loop shutting down), its waiters are cancelled,
    and what waited behind it is not sent."""
    call = Doubler()
    call.gate.clear()
    coalescer = Coalescer(call, most=100)
    running = coalescer.submit(1)
    await asyncio.sleep(0.01)
    behind = coalescer.submit(2)
    [task] = coalescer._running
    task.cancel()
    await asyncio.sleep(0.01)
    assert running.cancelled() and not behind.done()
    assert [[1]] == call.calls
