"""Conflation on a real stack: a post of a live counter's value that the gateway refused for a while is not
retried once a newer value of its key was claimed, so the client's last frame carries the newer value."""

from __future__ import annotations

import secrets
from collections import Counter
from contextlib import AsyncExitStack

import aiohttp
import pytest

from fanout.catalog import EventAttendanceUpdated
from fanout.envelope import QueueBody
from fanout.publish import catalog_event
from tests.conftest import Stack
from tests.helpers import connect, scrape, sqs_client, wait_for
from tests.integration.conftest import NO_FAULTS, Lane, faults, stats

pytestmark = pytest.mark.timeout(120)


def _counter(event_id: str, user: str, count: int, seq: int) -> QueueBody:
    payload = EventAttendanceUpdated(event_id=event_id, checked_in_count=count)
    return catalog_event(payload, meta={"seq": seq}, user_ids=[user])


def _publish(stack: Stack, body: QueueBody) -> None:
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=body.to_json())
    sqs.close()


async def _outcomes(stack: Stack) -> Counter[str]:
    figures = await scrape(stack.metrics_url)
    return figures.by("outcome", "fanout_events_total", event_type="event.attendance.updated")


async def test_a_refused_older_counter_value_is_not_retried_after_a_newer_one(lane: Lane) -> None:
    """Value A's posts are answered 429 (the emulator's faults for A's frame only) until B, the newer value
    of the same key, has reached the client; then the 429s stop. A retry of A made then would be the
    client's last frame, a stale count for good: A's retries stop once B was claimed, A ends `conflated`,
    and the client gets B only. Without the check, A arrives after B (the order is the faults', not the
    clock's: A keeps being refused until B was seen, with attempts to spare)."""
    stack = lane.stack
    worker = lane.worker(FANOUT_POST_ATTEMPTS="40")  # A retries (backoff up to 2 s) well past B
    run = secrets.token_hex(3)
    user, event_id = f"cnt-{run}", f"cnt-{run}"
    older, newer = _counter(event_id, user, 111, seq=1), _counter(event_id, user, 222, seq=2)
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await worker.ready()
        throttled = stats(stack).get("throttled", 0)
        faults(stack, throttle=1, only=older.id)
        _publish(stack, older)
        await wait_for(lambda: stats(stack).get("throttled", 0) >= throttled + 2, timeout=30)  # A retries
        _publish(stack, newer)

        def counts() -> list[int]:
            return [f["payload"]["checkedInCount"] for f in client.events() if f.get("type") == newer.type]

        await wait_for(lambda: 222 in counts(), timeout=30)
        faults(stack, **NO_FAULTS)  # a retry of A from now on would be posted

        async def settled() -> bool:  # B delivered, A ended one way or the other
            return (await _outcomes(stack)).total() >= 2

        await wait_for(settled, timeout=60, every=0.2)
        outcomes = await _outcomes(stack)
        seen = counts()
    assert [222] == seen
    assert Counter({"delivered": 1, "conflated": 1}) == outcomes
