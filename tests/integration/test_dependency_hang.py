"""A dependency that hangs rather than refuses: a frozen MongoDB (SIGSTOP) keeps its connections open
and answers nothing. The worker sees it within seconds, pauses, and loses no event when it resumes. A
silent SQS (a proxy that accepts connections and forwards nothing) at startup leaves the worker alive
and stoppable."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from contextlib import AsyncExitStack, suppress

import aiohttp
import pytest

from fanout.publish import build_event
from fanout.worker.consumer import Worker
from tests.conftest import Stack, free_port
from tests.helpers import Proxy, ReadyWatch, connect, drain_queue, scrape, sqs_client, wait_for
from tests.integration.conftest import Lane, Mongo, faults

FREEZE_S = 6.0


def _publish(stack: Stack, bodies: list[str]) -> None:
    sqs = sqs_client(stack.settings)
    url = sqs.get_queue_url(QueueName=stack.settings.queue_name)["QueueUrl"]
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sqs.close()


@pytest.mark.timeout(120)
@pytest.mark.xdist_group("own_mongo")  # its stack is test_dependency_faults' MongoDB outage one's too
async def test_a_frozen_mongodb_is_seen_within_seconds_and_no_event_is_lost(
    own_mongo_stack: tuple[Stack, Mongo],
) -> None:
    """SIGSTOP MongoDB for 6 s while events flow to three clients: /readyz turns 503 within a few
    seconds and 200 again soon after SIGCONT; every event published before, during and after arrives."""
    stack, mongo = own_mongo_stack
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
        clients = await asyncio.gather(*(connect(es, http, stack.ws_url, stack.settings, u) for u in users))
        await flow(1)
        stopped = time.monotonic()
        os.kill(mongo.process.pid, signal.SIGSTOP)
        try:
            await flow(FREEZE_S)
        finally:
            resumed = time.monotonic()
            with suppress(ProcessLookupError):
                os.kill(mongo.process.pid, signal.SIGCONT)
        await flow(1)
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


async def _silent_sqs(lane: Lane) -> Proxy:
    """A proxy to the lane's moto that has gone silent: it accepts connections and answers nothing."""
    assert lane.stack.settings.aws_endpoint_url is not None
    proxy = Proxy(free_port(), int(lane.stack.settings.aws_endpoint_url.rsplit(":", 1)[1]))
    proxy.silent = True
    await proxy.start()
    return proxy


async def test_a_sigterm_while_sqs_hangs_at_startup_stops_the_worker_in_time(lane: Lane) -> None:
    """SQS accepts connections and never answers while the worker resolves its queues: a SIGTERM then
    still stops it, cleanly, within its shutdown budget and the pool's 5 s margin."""
    proxy = await _silent_sqs(lane)
    worker = lane.worker(
        FANOUT_AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", FANOUT_SHUTDOWN_BUDGET_S="2"
    )
    await wait_for(lambda: bool(proxy.writers), timeout=30)  # its first call is open at the silent SQS
    started = time.monotonic()
    try:
        code = await asyncio.to_thread(worker.terminate, 2 + 5)
    finally:
        await proxy.stop()
    assert time.monotonic() - started < 2 + 5
    assert 0 == code


async def test_a_starting_worker_stays_alive_while_sqs_hangs(lane: Lane) -> None:
    """While SQS accepts connections and never answers, a starting worker is alive but not ready: its
    heartbeat ticks through the hung call, so /healthz does not get a task replaced for a dependency."""
    proxy = await _silent_sqs(lane)
    # A 1.5 s stall, three heartbeats of 0.5 s: 60 s and 2 s in production, where such a call hangs over
    # a minute.
    update = {"aws_endpoint_url": f"http://127.0.0.1:{proxy.port}", "stall_s": 1.5, "probe_s": 0.5}
    settings = lane.stack.settings.model_copy(update=update)
    worker = Worker(settings, serve_health=False)
    running = asyncio.create_task(worker.main())
    live, ready = [], []
    try:
        await wait_for(lambda: bool(proxy.writers), timeout=10)  # its first call is open at the silent SQS
        end = time.monotonic() + 3  # twice the stall: a heartbeat that stopped would show
        while time.monotonic() < end:
            live.append(worker.readiness.live()[0])
            ready.append(worker.readiness.ready)
            await asyncio.sleep(0.25)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
        await proxy.stop()
    assert (True, False) == (all(live), any(ready))


async def test_a_sigterm_while_sqs_hangs_mid_fan_out_stops_the_worker_in_time(lane: Lane) -> None:
    """SQS goes silent while 15 events are posted slowly, so their deletes cannot go out: a SIGTERM still
    stops the worker within its shutdown budget and the pool's 5 s margin; the messages come back on
    their own after their visibility timeout."""
    stack = lane.stack
    assert stack.settings.aws_endpoint_url is not None
    proxy = Proxy(free_port(), int(stack.settings.aws_endpoint_url.rsplit(":", 1)[1]))
    await proxy.start()
    url = f"http://127.0.0.1:{proxy.port}"
    worker = lane.worker(FANOUT_AWS_ENDPOINT_URL=url, FANOUT_SHUTDOWN_BUDGET_S="2")
    user = f"held-{secrets.token_hex(4)}"
    try:
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
            await connect(es, http, stack.ws_url, stack.settings, user)
            await worker.ready()
            faults(stack, latency_ms=2000)
            events = [
                build_event("notification.new", payload={"notificationId": f"n{i}"}, user_ids=[user])
                for i in range(15)
            ]
            await asyncio.to_thread(_publish, stack, [e.to_json() for e in events])
            await wait_for(lambda: _in_flight(stack, 15), timeout=10)
            proxy.silent = True
            await wait_for(lambda: _in_flight(stack, 0), timeout=10)  # delivered; their deletes hang
            started = time.monotonic()
            code = await asyncio.to_thread(worker.terminate, 60)
    finally:
        await proxy.stop()
    assert time.monotonic() - started < 2 + 5
    assert 0 == code


async def _in_flight(stack: Stack, count: int) -> bool:
    return count == (await scrape(stack.metrics_url)).value("fanout_events_in_flight")
