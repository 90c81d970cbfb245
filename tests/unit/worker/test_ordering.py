"""Per-key turns in one process: one event of a key at a time, the lowest seq waiting first."""

from __future__ import annotations

import asyncio

from fanout.worker.ordering import KeyTurns


async def _run(turns: KeyTurns, key: str, seq: int | None, order: list[object], work: float = 0.0) -> None:
    granted = turns.enter(key, seq)
    try:
        await granted
        order.append(seq)
        await asyncio.sleep(work)
    finally:
        turns.leave(key, granted)


async def test_events_entered_together_run_in_seq_order_one_at_a_time() -> None:
    """Entered as 3, 1, 2 before the loop turns, they run 1, 2, 3, never two at once."""
    turns = KeyTurns()
    order: list[object] = []
    running = 0
    peak = 0

    async def one(seq: int) -> None:
        nonlocal running, peak
        granted = turns.enter("k", seq)
        await granted
        running += 1
        peak = max(peak, running)
        order.append(seq)
        await asyncio.sleep(0.01)
        running -= 1
        turns.leave("k", granted)

    await asyncio.gather(one(3), one(1), one(2))
    assert ([1, 2, 3], 1) == (order, peak)
    assert 0 == len(turns)


async def test_the_lowest_seq_waiting_goes_next_when_the_turn_passes() -> None:
    """Events that arrive while one runs wait; when it leaves, the lowest seq among them goes first."""
    turns = KeyTurns()
    order: list[object] = []
    first = asyncio.create_task(_run(turns, "k", 10, order, work=0.05))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(_run(turns, "k", s, order)) for s in (14, 11, 12)]
    await asyncio.gather(first, *later)
    assert [10, 11, 12, 14] == order


async def test_keys_do_not_wait_for_each_other() -> None:
    """An event of another key runs while a key's event is still running."""
    turns = KeyTurns()
    order: list[object] = []
    slow = asyncio.create_task(_run(turns, "a", 1, order, work=0.2))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(_run(turns, "b", 1, order), 0.1)
    assert not slow.done()
    await slow


async def test_a_cancelled_waiter_is_skipped_and_a_second_leave_does_nothing() -> None:
    """A waiter that gives up before its turn is passed over; leaving a turn twice frees no one else's."""
    turns = KeyTurns()
    running = turns.enter("k", 1)
    gave_up = turns.enter("k", 2)
    third = turns.enter("k", 3)
    await running
    turns.leave("k", gave_up)  # cancelled while queued
    turns.leave("k", running)
    await asyncio.wait_for(third, 0.1)
    turns.leave("k", running)  # again: the turn is the third's now
    fourth = turns.enter("k", 4)
    await asyncio.sleep(0.01)
    assert not fourth.done()
    turns.leave("k", third)
    await asyncio.wait_for(fourth, 0.1)
    turns.leave("k", fourth)
    assert 0 == len(turns)


async def test_events_without_seq_keep_their_arrival_order() -> None:
    """Events of a key that carry no seq run in the order they arrived."""
    turns = KeyTurns()
    order: list[object] = []

    async def one(tag: str) -> None:
        granted = turns.enter("k", None)
        await granted
        order.append(tag)
        turns.leave("k", granted)

    await asyncio.gather(one("a"), one("b"), one("c"))
    assert ["a", "b", "c"] == order
