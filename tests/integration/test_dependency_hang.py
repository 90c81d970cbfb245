"""A dependency that hangs rather than refuses: a frozen MongoDB (SIGSTOP) keeps its connections open
and answers nothing. The worker sees it within seconds, pauses, and loses no event when it resumes."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, suppress

import aiohttp
import pytest

from fanout.publish import build_event
from tests.conftest import Stack
from tests.helpers import ReadyWatch, connect, drain_queue, sqs_client, wait_for
from tests.integration.test_dependency_faults import Mongo, stack_on_own_mongo

FREEZE_S = 6.0


@pytest.fixture(scope="module")
def frozen_stack(
    tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None
) -> Iterator[tuple[Stack, Mongo]]:
    """A stack whose MongoDB is a SecantusDB process this module owns, with 1 s MongoDB deadlines."""
    with stack_on_own_mongo(tmp_path_factory.mktemp("hang")) as owned:
        yield owned


def _publish(stack: Stack, bodies: list[str]) -> None:
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.close()


@pytest.mark.timeout(120)
async def test_a_frozen_mongodb_is_seen_within_seconds_and_no_event_is_lost(
    frozen_stack: tuple[Stack, Mongo],
) -> None:
    """SIGSTOP MongoDB for 6 s while events flow to three clients: /readyz turns 503 within a few
    seconds and 200 again soon after SIGCONT; every event published before, during and after arrives."""
    stack, mongo = frozen_stack
    assert mongo.process is not None
    users = [f"hang-{i}-{secrets.token_hex(3)}" for i in range(3)]
    ids: set[str] = set()

    async def flow(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            event = build_event("notification.new", payload={"notificationId": "n1"}, user_ids=users)
            ids.add(event.id)
            await asyncio.to_thread(_publish, stack, [event.to_json()])
            await asyncio.sleep(0.2)

    async with (
        AsyncExitStack() as es,
        aiohttp.ClientSession() as http,
        ReadyWatch(stack.metrics_url) as ready,
    ):
        clients = [await connect(es, http, stack.ws_url, stack.settings, u) for u in users]
        await flow(2)
        stopped = time.monotonic()
        os.kill(mongo.process.pid, signal.SIGSTOP)
        try:
            await flow(FREEZE_S)
        finally:
            resumed = time.monotonic()
            with suppress(ProcessLookupError):
                os.kill(mongo.process.pid, signal.SIGCONT)
        await flow(2)
        await wait_for(
            lambda: all(ids <= {e["id"] for e in c.events()} for c in clients), timeout=60, every=0.2
        )
        await wait_for(lambda: ready.first(200, resumed) is not None, timeout=15)
    not_ready = ready.first(503, stopped)
    back = ready.first(200, resumed)
    assert not_ready is not None and not_ready - stopped < 4.0, "not ready within a few seconds"
    assert {503} == {status for at, status in ready.seen if not_ready <= at < resumed}
    assert back is not None and back - resumed < 6.0
    assert 3 * FREEZE_S < len(ids)
    assert [] == await asyncio.to_thread(drain_queue, stack.settings, stack.settings.dlq_name, 0)
