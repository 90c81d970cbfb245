"""The worker's ``events_summary`` line: events per type and outcome since the last line."""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from fanout.worker.summary import Summary


def test_a_flush_logs_the_counts_per_type_and_outcome_then_starts_over() -> None:
    """Counts add up per (type, outcome), posts and failures are summed, and a second flush is silent."""
    summary = Summary(pid=7)
    summary.add("chat.message", "delivered", posts=3, failed=0)
    summary.add("chat.message", "delivered", posts=2, failed=0)
    summary.add("chat.message", "partial", posts=2, failed=1)
    summary.add("other", "no_connections", posts=0, failed=0)
    with capture_logs() as logs:
        summary.flush()
        summary.flush()
    assert 1 == len(logs)
    line = logs[0]
    assert ("events_summary", "info", 4, 7, 1, 7) == (
        line["event"], line["log_level"], line["events"], line["posts"], line["failed"], line["pid"]
    )  # fmt: skip
    assert {"chat.message": {"delivered": 2, "partial": 1}, "other": {"no_connections": 1}} == line["by_type"]


async def test_run_flushes_on_its_interval() -> None:
    """``run`` logs what was counted once per interval, and nothing for an interval with no events."""
    summary = Summary(pid=1)
    summary.add("chat.message", "delivered", posts=1, failed=0)
    with capture_logs() as logs:
        task = asyncio.create_task(summary.run(0.05))
        await asyncio.sleep(0.18)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert 1 == len([x for x in logs if x["event"] == "events_summary"])
