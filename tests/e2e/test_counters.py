"""Live counters without floods, end to end: 2,000 check-in updates of one event in two seconds reach a
watching client as a few frames (FANOUT_CONFLATE_MS=300), the last one carrying the final value."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

import aiohttp

from fanout.catalog import EventAttendanceUpdated
from fanout.publish import catalog_event
from tests.conftest import Stack
from tests.e2e.conftest import uid
from tests.helpers import connect, scrape, sqs_client, wait_for

UPDATES = 2000


def _publish(stack: Stack, event_id: str, seconds: float) -> None:
    """2,000 counter values 0..1999, as ten senders of batches spread over ``seconds``."""
    bodies = [
        catalog_event(EventAttendanceUpdated(event_id=event_id, checked_in_count=n), meta={"seq": n},
                      topics=[f"event:{event_id}"]).to_json()
        for n in range(UPDATES)
    ]  # fmt: skip
    batches = [bodies[i : i + 10] for i in range(0, UPDATES, 10)]
    started = time.monotonic()

    def send(part: int) -> None:
        sqs = sqs_client(stack.settings)
        url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
        for i in range(part, len(batches), 10):
            time.sleep(max(0.0, started + seconds * i / len(batches) - time.monotonic()))
            entries = [{"Id": str(k), "MessageBody": b} for k, b in enumerate(batches[i])]
            assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        sqs.close()

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(send, range(10)))


async def test_a_hot_counter_reaches_a_watcher_as_few_frames_ending_with_the_final_value(
    live_stack: Stack,
) -> None:
    """A watcher of event:<id> gets the 2,000 updates as at most a hundred frames (a few per second), in
    increasing order, the last one holding 1,999; the rest are counted as conflated."""
    event_id = uid("e")
    s = live_stack.settings
    before = await _outcomes(live_stack)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        watcher = await connect(es, http, live_stack.ws_url, s, uid("w"))
        await watcher.ws.send_json({"action": "subscribe", "topics": [f"event:{event_id}"], "id": "s1"})
        await wait_for(lambda: any(f.get("replyTo") == "s1" for f in watcher.frames))
        await asyncio.to_thread(_publish, live_stack, event_id, 2.0)

        def counts() -> list[int]:
            return [f["payload"]["checkedInCount"] for f in watcher.events()]

        await wait_for(lambda: UPDATES - 1 in counts(), timeout=60)
        await asyncio.sleep(1)  # nothing older may follow the final value
        seen = counts()
    # No bound on how long publishing took: on a busy machine it took 12 s once. At 300 ms windows, a
    # hundred frames would still take 30 s of publishing, so the bound below shows conflation anyway.
    assert UPDATES - 1 == seen[-1]
    assert seen == sorted(set(seen))
    assert len(seen) <= UPDATES // 20, len(seen)  # 14 on a 2-core machine at load 2.4

    async def settled() -> bool:  # every update received has its outcome, the stragglers' too
        now = await _outcomes(live_stack) - before
        return now[CONFLATED] + now[DELIVERED] >= UPDATES

    # Every update not seen is counted as conflated, once the worker has taken the stragglers too. SQS
    # delivers at least once: a message received again (its delete late under load) is conflated again,
    # so each receive past the 2,000 may add one; with none the count is exact.
    with contextlib.suppress(AssertionError):  # the assertions below say what is missing
        await wait_for(settled, timeout=20, every=0.5)
    counted = await _outcomes(live_stack) - before
    again = counted.total() - UPDATES
    assert len(seen) == counted[DELIVERED]
    assert UPDATES - len(seen) <= counted[CONFLATED] <= UPDATES - len(seen) + again, counted


CONFLATED, DELIVERED = "conflated", "delivered"


async def _outcomes(stack: Stack) -> Counter[str]:
    """The worker's outcomes of attendance updates so far (other tests share the stack)."""
    figures = await scrape(stack.metrics_url)
    return figures.by("outcome", "fanout_events_total", event_type="event.attendance.updated")
