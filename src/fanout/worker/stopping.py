"""Ending the worker's own tasks at shutdown, within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fanout.logging import get_logger

log = get_logger("fanout.worker")

#: How long a shutdown waits for cancelled tasks to end, asking again every ``RECANCEL_S``.
CANCEL_BUDGET_S = 5.0
RECANCEL_S = 0.5
#: How long a shutdown's last SQS calls (releases, pending deletes) may take after the budget: an SQS
#: that hangs would hold each for its 10 s timeout, past the pool's margin and ECS's stop timeout. What
#: they could not do comes back after its visibility timeout.
LAST_CALLS_S = 3.0


async def cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they end, asking again while one runs on: a library that turns a
    cancellation into an error of its own lets a task with ``except Exception`` (the probe, the census)
    go on, and a plain gather would wait for it for ever. One that will not end within
    ``CANCEL_BUDGET_S`` is left behind, with a warning, so the worker still stops."""
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + CANCEL_BUDGET_S
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_S)
        if pending and asyncio.get_running_loop().time() >= deadline:
            names = sorted({task.get_coro().__qualname__ for task in pending})  # type: ignore[union-attr]
            log.warning("tasks_would_not_stop", tasks=names)
            break
    for task in tasks:  # retrieve each outcome: an error is not reported as never retrieved
        if task.done() and not task.cancelled():
            task.exception()
