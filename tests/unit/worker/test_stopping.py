"""The worker's shutdown cancels its background tasks even when a library swallows a cancellation."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from fanout.worker import stopping


class Swallower:
    """A loop like the probe's: ``except Exception`` around a call that turns the first ``times``
    cancellations into an error of its own, as a library may."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.swallowed = 0
        self.errors = 0  # as the probe marks a dependency not ready and goes on

    async def run(self) -> None:
        while True:
            try:
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    if self.swallowed >= self.times:
                        raise
                    self.swallowed += 1
                    raise OSError("connection attempt cancelled") from None
            except Exception:
                self.errors += 1


async def _started(swallower: Swallower) -> asyncio.Task[None]:
    task = asyncio.create_task(swallower.run())
    await asyncio.sleep(0.01)  # inside its loop: a task cancelled before it starts never runs
    return task


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    """A task that turns the first two cancellations into errors still ends, well within the budget."""
    swallower = Swallower(2)
    task = await _started(swallower)
    started = asyncio.get_running_loop().time()
    await stopping.cancel_all([task])
    assert task.cancelled()
    assert 2 == swallower.swallowed  # it went on twice before the third cancellation ended it
    assert asyncio.get_running_loop().time() - started < stopping.CANCEL_BUDGET_S


async def test_a_task_that_never_stops_is_left_behind_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that swallows every cancellation holds the shutdown no longer than the budget, and is named."""
    monkeypatch.setattr(stopping, "CANCEL_BUDGET_S", 1.0)
    swallower = Swallower(10**9)
    task = await _started(swallower)
    try:
        with capture_logs() as logs:
            started = asyncio.get_running_loop().time()
            await stopping.cancel_all([task])
        assert asyncio.get_running_loop().time() - started < 2.0
        assert not task.done() and swallower.swallowed >= 2
        assert [["Swallower.run"]] == [e["tasks"] for e in logs if e["event"] == "tasks_would_not_stop"]
    finally:
        swallower.times = 0  # the next cancellation ends it
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
