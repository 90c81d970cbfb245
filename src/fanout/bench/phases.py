"""The worker's phases: closed-loop throughput, steady-rate latency, the soak, the pool curve, and the
request-path time of ``Publisher.publish``.

Events go to the worker's queue through ``Feed``; the clients' process counts what arrives. Worker CPU
comes from /proc (``proc``), so only the worker's own processes count against it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import boto3
from aiobotocore.session import get_session

from fanout.bench.plan import AUDIENCES, EVENT_TYPE
from fanout.bench.proc import cpu_seconds, machine_busy_seconds, process_tree, rss_mb
from fanout.bench.results import Latency, Percentiles, PoolFailure, Soak, Throughput
from fanout.bench.rig import Rig
from fanout.envelope import QueueBody
from fanout.publish import Publisher


@dataclass(frozen=True)
class Feed:
    """The worker's queue, through an open aiobotocore SQS client."""

    sqs: Any
    url: str

    async def send_all(self, bodies: list[QueueBody], concurrency: int = 4) -> None:
        """Send in batches of ten, ``concurrency`` batches in flight."""
        batches = deque(bodies[i : i + 10] for i in range(0, len(bodies), 10))

        async def pump() -> None:
            while batches:
                batch = batches.popleft()
                entries = [{"Id": str(i), "MessageBody": b.to_json()} for i, b in enumerate(batch)]
                reply = await self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
                if reply.get("Failed"):
                    raise RuntimeError(f"send_message_batch failed: {reply['Failed'][:1]}")

        await asyncio.gather(*(pump() for _ in range(concurrency)))


@asynccontextmanager
async def open_feed(rig: Rig) -> AsyncIterator[Feed]:
    """An SQS client on the worker's queue, closed on exit."""
    async with get_session().create_client("sqs", **rig.settings.aws_client_kwargs()) as sqs:
        url = (await sqs.get_queue_url(QueueName=rig.settings.queue_name))["QueueUrl"]
        yield Feed(sqs, url)


async def throughput(rig: Rig, feed: Feed, fanout: int, posts: int) -> Throughput:
    """About ``posts`` posts at ``fanout`` as fast as the worker delivers them."""
    events = max(1, posts // fanout)
    expected = events * fanout
    bodies = [rig.event(k, fanout) for k in range(events)]
    await rig.reset()
    # Closed loop: keep a bounded backlog in the queue. A deep one would measure moto, whose
    # receive and delete scan every message in the queue, rather than the worker.
    window = max(10, min(200, 4000 // fanout))
    cpu0, busy0 = cpu_seconds(rig.worker_pid), machine_busy_seconds()
    t0 = time.time()
    sent = 0
    while sent < events:
        done = (await rig.stats())["total"] // fanout
        room = min(events - sent, window - (sent - done))
        if room >= min(10, events - sent):
            await feed.send_all(bodies[sent : sent + room])
            sent += room
        else:
            await asyncio.sleep(0.01)
    stats = await rig.wait(expected, timeout_s=120 + expected / 200)
    cpu1, busy1 = cpu_seconds(rig.worker_pid), machine_busy_seconds()
    rig.check(f"throughput_fanout_{fanout}", expected, stats["total"])
    elapsed = max(1e-6, stats["last_at"] - t0)
    delivered = max(1, stats["total"])
    return Throughput(
        posts=delivered,
        events=events,
        seconds=round(elapsed, 3),
        posts_per_s=round(delivered / elapsed, 1),
        worker_cpu_us_per_post=round((cpu1 - cpu0) / delivered * 1e6, 1),
        worker_cpu_us_per_event=round((cpu1 - cpu0) / max(1, delivered // fanout) * 1e6, 1),
        worker_cpu_share=round((cpu1 - cpu0) / elapsed, 3),
        # Cores busy with everything else: emulator, clients, moto, SecantusDB, this process, noise.
        others_cpu_share=round((busy1 - busy0 - (cpu1 - cpu0)) / elapsed, 3),
    )


async def steady(
    rig: Rig,
    feed: Feed,
    fanout: int,
    posts_per_s: float,
    seconds: float,
    sample: Callable[[], None] | None = None,
) -> Latency:
    """Offer ``posts_per_s`` at ``fanout`` for ``seconds``; latency as the clients see it.

    ``sample`` is called at the start and every five seconds after.
    """
    rate = max(1.0, posts_per_s / fanout)  # events per second
    events = max(1, int(rate * seconds))
    await rig.reset()
    loop = asyncio.get_running_loop()
    tick = max(0.005, min(0.1, 1 / rate))
    start = loop.time()
    sent = 0
    pending: set[asyncio.Task[None]] = set()
    next_sample = start
    while sent < events:
        due = min(events, int((loop.time() - start) * rate) + 1)
        if due > sent:
            bodies = [rig.event(k, fanout) for k in range(sent, due)]
            sent = due
            task = asyncio.create_task(feed.send_all(bodies, concurrency=2))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if sample is not None and loop.time() >= next_sample:
            sample()
            next_sample += 5.0
        await asyncio.sleep(tick)
    await asyncio.gather(*pending)
    expected = events * fanout
    stats = await rig.wait(expected, timeout_s=60 + expected / 200, latencies=True)
    rig.check(f"latency_fanout_{fanout}", expected, stats["total"])
    return Latency.at(round(rate * fanout, 1), stats["latencies_ms"])


async def soak(rig: Rig, feed: Feed, posts_per_s: float, seconds: float) -> Soak:
    """A long steady phase at fan-out 20, sampling the worker's largest process's RSS."""
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()

    def sample() -> None:
        samples.append((round(time.monotonic() - t0, 1), round(max(rss_mb(rig.worker_pid)), 1)))

    latency = await steady(rig, feed, 20, posts_per_s, seconds, sample)
    sample()
    half = min(samples, key=lambda x: abs(x[0] - seconds / 2))[1]
    return Soak(seconds, latency, samples, round(samples[-1][1] - half, 1))


def publish_times(rig: Rig) -> dict[int, Percentiles]:
    """``Publisher.publish`` call time at each audience size, against the local SQS.

    The queue is drained after every call, untimed, as a worker keeps a live queue drained (moto's
    ``SendMessage`` counts every message already queued). The sizes take turns call by call, so a
    noisy moment of the shared machine falls on all of them alike.
    """
    settings = rig.settings.model_copy(update={"queue_name": rig.pub_queue})
    publisher = Publisher(settings)
    sqs: Any = boto3.client("sqs", **rig.settings.aws_client_kwargs())
    url = sqs.get_queue_url(QueueName=rig.pub_queue)["QueueUrl"]

    def drain() -> None:
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            sqs.delete_message_batch(QueueUrl=url, Entries=done)

    times: dict[int, list[float]] = {size: [] for size in AUDIENCES}
    try:
        for size in AUDIENCES:
            for _ in range(5):
                publisher.publish(EVENT_TYPE, user_ids=rig.user_ids(size), payload=rig.payload)
        drain()
        for _ in range(rig.plan.publish_calls):
            for size, taken in times.items():
                users = rig.user_ids(size)
                t = time.perf_counter()
                publisher.publish(EVENT_TYPE, user_ids=users, payload=rig.payload)
                taken.append((time.perf_counter() - t) * 1000)
                drain()
        return {size: Percentiles.of(taken) for size, taken in times.items()}
    finally:
        sqs.close()
        publisher.close()


async def restart_worker(rig: Rig, processes: int) -> bool:
    """Replace the stack's worker with ``fanout worker --processes N``; False if that fails."""
    assert rig.stack is not None
    part = rig.stack.worker
    assert part is not None
    assert part.process is not None
    part.process.terminate()
    await asyncio.to_thread(part.process.wait, 30)
    argv = [sys.executable, "-m", "fanout", "worker", "--processes", str(processes)]
    part.process = subprocess.Popen(argv, env=rig.stack.env, start_new_session=True)  # noqa: ASYNC220
    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(part.ready):
        if part.process.poll() is not None or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def pool_curve(rig: Rig, feed: Feed) -> dict[int, Throughput | PoolFailure]:
    """Throughput at fan-out 20 with each of the plan's pool sizes; stops at a worker that fails."""
    curve: dict[int, Throughput | PoolFailure] = {}
    for n in rig.plan.pool:
        rig.echo(f"pool: fanout worker --processes {n}")
        if not await restart_worker(rig, n):
            curve[n] = PoolFailure("worker did not become ready")
            break
        await throughput(rig, feed, 20, 200)
        res = await throughput(rig, feed, 20, rig.plan.throughput_posts[20])
        curve[n] = replace(res, worker_processes_seen=len(process_tree(rig.worker_pid)))
    return curve
