"""The worker runs on the event loop FANOUT_EVENT_LOOP names: uvloop by default, asyncio's own when told,
and delivers on either."""

from __future__ import annotations

import asyncio
import json
import secrets
from contextlib import AsyncExitStack

import aiohttp
import pytest

from fanout.publish import build_event
from tests.helpers import connect, sqs_client, wait_for
from tests.integration.conftest import Lane

pytestmark = pytest.mark.timeout(90)


def _started_on(log: str) -> str:
    lines = [json.loads(line) for line in log.splitlines() if '"worker_started"' in line]
    assert len(lines) == 1, f"expected one worker_started line, got {len(lines)}"
    return str(lines[0]["loop"])


@pytest.mark.parametrize(("setting", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
async def test_the_worker_delivers_on_the_event_loop_it_is_told(
    lane: Lane, setting: str | None, expected: str
) -> None:
    """A worker started with FANOUT_EVENT_LOOP unset runs on uvloop, one started with `asyncio` on the
    standard library's loop, and each delivers an event to its user's socket."""
    stack = lane.stack
    worker = lane.worker(**({"FANOUT_EVENT_LOOP": setting} if setting else {}))
    await worker.ready()
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, f"loop-{secrets.token_hex(3)}")
        event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=[client.user_id])
        sqs = sqs_client(stack.settings)
        url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
        await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody=event.to_json())
        sqs.close()
        await wait_for(lambda: any(e["id"] == event.id for e in client.events()), timeout=20)
    assert 0 == worker.terminate()
    assert expected == _started_on(worker.log.read_text())
