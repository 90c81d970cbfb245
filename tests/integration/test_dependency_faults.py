"""Dependency faults: MongoDB, SQS or the management API goes away and comes back; nothing is lost."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from fanout import Publisher
from fanout.errors import WorkerFailed
from fanout.worker.consumer import Worker
from tests.conftest import Stack, free_port
from tests.helpers import Proxy, connect, drain_queue, wait_for
from tests.integration.conftest import NO_FAULTS, Lane, Mongo, faults


def _notify(stack: Stack, user: str, count: int) -> set[str]:
    """Publish ``count`` notifications to ``user`` straight to SQS; their event ids."""
    publisher = Publisher(stack.settings)
    try:
        return {
            publisher.publish(
                "notification.new", user_ids=[user], payload={"notificationId": f"n{i}", "n": i}
            )
            for i in range(count)
        }
    finally:
        publisher.close()


async def _ready(stack: Stack) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{stack.metrics_url}/readyz") as r:
            return r.status
    except aiohttp.ClientError:
        return 0


@pytest.mark.xdist_group("own_mongo")  # its stack is test_dependency_hang's frozen one's too
async def test_mongo_outage_then_recovery_loses_no_event(own_mongo_stack: tuple[Stack, Mongo]) -> None:
    """With MongoDB stopped, /readyz turns 503 and events wait; once it is back, all are delivered."""
    stack, mongo = own_mongo_stack
    user = f"outage-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        mongo.stop()
        await wait_for(lambda: _is(stack, 503), timeout=30)
        ids = _notify(stack, user, 20)
        await asyncio.sleep(1.5)  # three probe rounds (were 1.5 rounds of 2 s)
        assert 503 == await _ready(stack)
        mongo.start()
        await wait_for(lambda: _is(stack, 200), timeout=60)
        await wait_for(lambda: ids <= {e["id"] for e in client.events()}, timeout=90)
    assert [] == drain_queue(stack.settings, stack.settings.dlq_name, wait_s=0)


async def _is(stack: Stack, status: int) -> bool:
    return status == await _ready(stack)


async def test_gateway_refusing_connections_then_back_loses_no_event(lane: Lane) -> None:
    """Posts refused at the socket: /readyz 503, events wait; when the API is back, all are delivered."""
    stack = lane.stack  # the shared stack's servers, with queues of this test's own
    proxy = Proxy(free_port(), stack.settings.gateway_port)
    endpoint = f"http://127.0.0.1:{proxy.port}/{stack.settings.gateway_stage}"
    # the first event meets the refusal, an outage: it is tried again 1 s later, not 5; /readyz follows
    # the probe's rounds, every 0.5 s rather than 2
    lane.worker(FANOUT_MANAGEMENT_ENDPOINT=endpoint, FANOUT_POST_TIMEOUT_S="1", FANOUT_OUTAGE_DELAY_S="1",
                FANOUT_PROBE_S="0.5")  # fmt: skip
    user = f"refused-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        ids = _notify(stack, user, 10)
        await wait_for(lambda: _is(stack, 503), timeout=30)
        assert [] == client.events()
        await proxy.start()
        await wait_for(lambda: ids <= {e["id"] for e in client.events()}, timeout=60)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        [late] = _notify(stack, user, 1)
        await wait_for(lambda: late in {e["id"] for e in client.events()}, timeout=30)
        await proxy.stop()
    assert [] == drain_queue(stack.settings, stack.settings.dlq_name, wait_s=0)


async def test_sqs_unreachable_then_back_loses_no_event(lane: Lane) -> None:
    """SQS refusing connections: the worker stays up, /readyz 503; when SQS is back, queued events arrive;
    a SIGTERM while it is gone again still stops the worker cleanly."""
    stack = lane.stack  # the shared stack's servers, with queues of this test's own
    assert stack.settings.aws_endpoint_url is not None
    sqs_port = int(stack.settings.aws_endpoint_url.rsplit(":", 1)[1])
    proxy = Proxy(free_port(), sqs_port)
    await proxy.start()
    # A long poll open at moto when the proxy stops still takes messages sent meanwhile, and its answer is
    # lost: they come back after the visibility timeout, 5 s here rather than 30.
    proxied = f"http://127.0.0.1:{proxy.port}"
    # /readyz follows the probe's rounds, every 0.5 s rather than 2
    worker = lane.worker(
        FANOUT_AWS_ENDPOINT_URL=proxied, FANOUT_VISIBILITY_TIMEOUT_S="5", FANOUT_PROBE_S="0.5"
    )
    user = f"nosqs-{secrets.token_hex(4)}"
    async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
        client = await connect(es, http, stack.ws_url, stack.settings, user)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        await proxy.stop()
        await wait_for(lambda: _is(stack, 503), timeout=60)
        ids = _notify(stack, user, 10)  # straight to SQS, which the worker cannot reach
        await asyncio.sleep(2)
        assert [] == client.events()
        assert worker.process is not None and worker.process.poll() is None
        await proxy.start()
        await wait_for(lambda: ids <= {e["id"] for e in client.events()}, timeout=60)
        await wait_for(lambda: _is(stack, 200), timeout=30)
        await proxy.stop()
    # SIGTERM with SQS unreachable again: the worker still exits, and cleanly (once it did not, in 30 s).
    assert 0 == await asyncio.to_thread(worker.terminate, 30)


async def test_the_readiness_probe_asks_sqs_only_while_no_receive_answers(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle on 20 s long polls, the probe asks SQS itself every round; while events flow, each receive
    that answers already shows SQS is up, and the probe spares its aiobotocore call."""
    # Rounds every second (2 s by default): the events below still answer a receive three times a round.
    update = {"receive_wait_s": 20, "shutdown_budget_s": 0.5, "probe_s": 1.0}
    settings = lane.stack.settings.model_copy(update=update)
    worker = Worker(settings, serve_health=False)
    running = asyncio.create_task(worker.main())
    publisher = await asyncio.to_thread(Publisher, lane.stack.settings)
    try:
        await wait_for(lambda: worker.readiness.ready, timeout=30)
        sqs = worker.clients.sqs
        asked: list[float] = []
        real = sqs.get_queue_attributes

        async def counted(**kwargs: Any) -> Any:  # the real call, counted
            asked.append(time.monotonic())
            return await real(**kwargs)

        monkeypatch.setattr(sqs, "get_queue_attributes", counted)
        await wait_for(lambda: len(asked) >= 2, timeout=3)  # idle: a round about every second, each asks
        idle = len(asked)
        user = f"probe-{secrets.token_hex(4)}"
        end = time.monotonic() + 3  # three rounds: each would ask again were the receives not counted
        while time.monotonic() < end:  # a receive answers every 0.3 s or so
            await asyncio.to_thread(
                publisher.publish, "notification.new", user_ids=[user], payload={"notificationId": "n1"}
            )
            await asyncio.sleep(0.3)
        busy = len(asked) - idle
        assert worker.readiness.ready
    finally:
        publisher.close()
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert idle >= 2, asked
    assert busy <= 1, asked  # a round that straddles the first events may still ask


async def test_events_in_flight_counts_the_events_whose_posts_are_held(lane: Lane) -> None:
    """Three events whose posts the emulator holds for 2 s read as three in flight, and as none once
    they are delivered."""
    worker = Worker(lane.stack.settings, serve_health=False)
    running = asyncio.create_task(worker.main())
    user = f"held-{secrets.token_hex(4)}"

    def in_flight() -> float | None:
        return worker.registry.get_sample_value("fanout_events_in_flight")

    try:
        async with AsyncExitStack() as es, aiohttp.ClientSession() as http:
            client = await connect(es, http, lane.stack.ws_url, lane.stack.settings, user)
            await wait_for(lambda: worker.readiness.ready, timeout=30)
            faults(lane.stack, **{**NO_FAULTS, "latency_ms": 2000})
            ids = await asyncio.to_thread(_notify, lane.stack, user, 3)
            await wait_for(lambda: in_flight() == 3, timeout=10)
            faults(lane.stack, **NO_FAULTS)
            await wait_for(lambda: ids <= {e["id"] for e in client.events()}, timeout=15)
            await wait_for(lambda: in_flight() == 0, timeout=10)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def test_a_worker_is_not_ready_while_its_events_queue_is_gone(lane: Lane) -> None:
    """With the events queue deleted (its receives fail) and the bulk queue still answering, the worker
    reports not ready throughout (review12: any bulk-queue receive that answers sets readiness.sqs back
    to True and makes the probe skip its events-queue check, so /readyz flaps to ready)."""
    import boto3

    # Probe rounds every 0.5 s and a bulk receive answering every second: a flap shows within a few seconds.
    update = {"receive_wait_s": 1, "shutdown_budget_s": 2.0, "probe_s": 0.5}
    settings = lane.stack.settings.model_copy(update=update)
    worker = Worker(settings, serve_health=False)
    running = asyncio.create_task(worker.main())
    samples: list[bool] = []
    try:
        await wait_for(lambda: worker.readiness.ready, timeout=30)
        assert len(worker.intake.lines) == 2  # the events queue and the bulk queue
        sqs: Any = boto3.client("sqs", **settings.aws_client_kwargs())
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"])
        sqs.close()
        await wait_for(lambda: not worker.readiness.sqs, timeout=15)
        end = time.monotonic() + 3  # six probe rounds, three bulk receives
        while time.monotonic() < end:
            samples.append(worker.readiness.ready)
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert samples and not any(samples), f"ready in {sum(samples)} of {len(samples)} samples"


def _readiness_lines(log: Path) -> list[dict[str, Any]]:
    return [
        line
        for raw in log.read_text().splitlines()
        if raw.startswith("{") and (line := json.loads(raw)).get("event") == "readiness_changed"
    ]


async def test_a_worker_logs_which_dependency_it_lost_and_when_it_is_back(lane: Lane) -> None:
    """MongoDB gone while the worker idles: no message fails, yet the log says `readiness_changed` with
    mongo false (a pool's /readyz cannot say which, and an ECS task's is out of reach), then ready again."""
    stack = lane.stack
    assert stack.settings.mongo_uri is not None
    mongo_port = int(stack.settings.mongo_uri.get_secret_value().rsplit(":", 1)[1])
    proxy = Proxy(free_port(), mongo_port)
    await proxy.start()
    worker = lane.worker(
        # directConnection: SecantusDB names its own address, which pymongo would use past the proxy
        FANOUT_MONGO_URI=f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true",
        FANOUT_MONGO_TIMEOUT_MS="1000",
        FANOUT_PROBE_S="0.5", FANOUT_LOG_LEVEL="INFO",
    )  # fmt: skip
    try:
        await wait_for(lambda: _is(stack, 200), timeout=30)
        assert [] == _readiness_lines(worker.log)  # no line while nothing changes
        await proxy.stop()
        await wait_for(lambda: bool(_readiness_lines(worker.log)), timeout=30)
        await proxy.start()
        await wait_for(lambda: len(_readiness_lines(worker.log)) >= 2, timeout=30)
    finally:
        await proxy.stop()
    lost, back = _readiness_lines(worker.log)[:2]
    assert ("warning", False, False, True) == (lost["level"], lost["ready"], lost["mongo"], lost["sqs"])
    assert ("info", True, True) == (back["level"], back["ready"], back["mongo"])


async def test_a_poller_that_fails_stops_the_worker_with_its_messages_released(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug that ends a poller (here: starting a received batch raises) stops the worker, which logs
    worker_task_failed, releases what it held at once and fails (exit 1, started again), instead of
    running on with a live /healthz while it takes no more work."""
    import boto3

    start_all = Worker._start_all
    batches: list[list[Any]] = []

    async def broken(self: Worker, line: Any, messages: list[Any]) -> None:
        batches.append(messages)
        if len(batches) > 1:  # the other poller's receive, open at the stop, got the released message
            return await start_all(self, line, messages)  # the real code releases it: the worker stops
        self.intake.hold(line, [m.receipt for m in messages])
        raise RuntimeError("a bug while starting a batch")

    monkeypatch.setattr(Worker, "_start_all", broken)
    settings = lane.stack.settings.model_copy(update={"receive_wait_s": 1, "shutdown_budget_s": 1.0})
    worker = Worker(settings, serve_health=False)
    with capture_logs() as logs:
        running = asyncio.create_task(worker.main())
        await wait_for(lambda: worker.readiness.ready, timeout=30)
        await asyncio.to_thread(_notify, lane.stack, f"bug-{secrets.token_hex(4)}", 1)
        with pytest.raises(WorkerFailed):
            await asyncio.wait_for(running, 30)
    assert ["_poll"] == [e["task"].rsplit(".", 1)[-1] for e in logs if e["event"] == "worker_task_failed"]
    sqs: Any = boto3.client("sqs", **settings.aws_client_kwargs())
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    back = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    sqs.close()
    assert 1 == len(back)  # released by the drain, not left invisible for its visibility timeout
