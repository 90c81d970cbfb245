"""The background publishers against a real moto server: every event arrives exactly once, an outage
loses none silently, and what is still buffered goes out at exit and on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from prometheus_client import CollectorRegistry

from fanout.config import Settings
from fanout.envelope import QueueBody
from fanout.errors import PublishBufferFull, PublisherClosed
from fanout.lifeline import die_with_parent
from fanout.local.queues import create_queues
from fanout.local.stack import moto_argv
from fanout.publish import AsyncBackgroundPublisher, BackgroundPublisher, build_event
from tests.catalog_examples import payload
from tests.conftest import Server, dev_settings, free_port
from tests.helpers import QueueReceiver, SlowFront, by_key, interleaved_key, queued_seqs, sqs_client


def queue_for(moto: Server) -> Settings:
    settings = dev_settings(moto)
    create_queues(settings)
    return settings


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@pytest.mark.timeout(120)  # about 600 moto requests
async def test_two_thousand_events_from_eight_tasks_arrive_exactly_once(moto_server: Server) -> None:
    """8 tasks publish 2,000 events through a 100-event buffer that fills (they wait for room); each
    arrives once, in batches."""
    settings = queue_for(moto_server)
    registry = CollectorRegistry()
    peak = 0
    with QueueReceiver(settings) as receiver:
        async with AsyncBackgroundPublisher(settings, registry=registry, buffer=100, block_ms=10_000) as pub:

            async def task(k: int) -> list[str]:
                return [
                    await pub.publish(
                        "notification.new", user_ids=[f"u{k}"], payload={"notificationId": f"n{i}"}
                    )
                    for i in range(250)
                ]

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, pub.pending)
                    await asyncio.sleep(0.001)

            watcher = asyncio.create_task(watch())
            ids = [i for part in await asyncio.gather(*(task(k) for k in range(8))) for i in part]
            watcher.cancel()
        arrived = receiver.wait_sent(len(ids), timeout=100)
    assert 2_000 == len(set(ids))
    assert 100 == peak, "the buffer never filled: nothing waited for room"
    twice = {i: receiver.message_ids[i] for i, n in arrived.items() if n > 1}
    retried = value(registry, "fanout_publisher_retried_total")
    assert Counter(ids) == arrived, f"sent again: {retried}; received twice: {list(twice.items())[:3]}"
    assert 2_000 == value(registry, "fanout_publisher_sent_total", event_type="notification.new")
    assert 0 == value(registry, "fanout_publisher_failed_total")
    calls = value(registry, "fanout_publisher_batch_size_count")
    assert calls <= 300  # batched: 200 calls if every batch were full


def test_eight_threads_through_the_sync_publisher_arrive_exactly_once(moto_server: Server) -> None:
    """8 threads publish 800 events through the thread-based publisher and its 100-event buffer; each
    arrives once, and a closed publisher refuses more."""
    settings = queue_for(moto_server)
    registry = CollectorRegistry()
    ids: list[str] = []
    with QueueReceiver(settings) as receiver:
        pub = BackgroundPublisher(settings, registry=registry, buffer=100, block_ms=10_000)

        def run(k: int) -> None:
            mine = [
                pub.publish("chat.message", user_ids=[f"u{k}"], payload=payload("chat.message", n=i))
                for i in range(100)
            ]
            ids.extend(mine)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 0 == pub.close()
        with pytest.raises(PublisherClosed):
            pub.publish("chat.message", user_ids=["u1"], payload=payload("chat.message"))
        arrived = receiver.wait_sent(800)
    assert Counter(ids) == arrived
    assert 800 == len(arrived)
    assert 0 == pub.pending


class Moto:
    """A moto server of its own, so a test can stop it and start it again on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            moto_argv("127.0.0.1", self.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                boto3.client("sqs", endpoint_url=self.url, region_name="us-east-1").list_queues()
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("moto did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def moto() -> Iterator[Moto]:
    server = Moto(free_port())
    server.start()
    yield server
    server.kill()


def test_an_outage_loses_no_event_silently(moto: Moto) -> None:
    """With moto killed, events buffer until the buffer is full, then the caller gets PublishBufferFull;
    after moto restarts every accepted event arrives, and none that was refused."""
    settings = dev_settings(aws_endpoint_url=moto.url)
    create_queues(settings)
    registry = CollectorRegistry()
    # each refused publish first waits block_ms for room, which an outage never makes: 200 of them below
    pub = BackgroundPublisher(settings, registry=registry, buffer=300, block_ms=1, flush_s=30)
    accepted: list[str] = []
    told = 0

    def publish(n: int) -> None:
        nonlocal told
        for i in range(n):
            try:
                accepted.append(
                    pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"})
                )
            except PublishBufferFull:
                told += 1

    with QueueReceiver(settings) as receiver:
        publish(200)
        assert 0 == pub.flush()
        receiver.wait(200, settle_s=0)  # everything sent before the outage is received: moto forgets
        moto.kill()
        publish(500)  # about 300 fit in the buffer; the caller is told about the rest
        during = len(accepted) - 200
        assert 300 <= pub.pending == during
        moto.start()
        create_queues(settings)
        assert 0 == pub.flush()  # what was buffered during the outage goes out once SQS is back
        publish(100)
        assert 0 == pub.close()
        arrived = receiver.wait_sent(len(accepted))
    assert 500 - during == told > 0
    assert 800 == len(accepted) + told
    assert set(accepted) == set(arrived)
    assert 1 == max(arrived.values())
    assert told == value(registry, "fanout_publisher_failed_total", reason="buffer_full")
    assert 0 < value(registry, "fanout_publisher_retried_total")


_SCRIPT = """
import asyncio, faulthandler, json, os, signal, sys, time
faulthandler.enable()  # a SIGABRT from the test prints every thread's stack: where a hang waits
from prometheus_client import CollectorRegistry
from fanout.config import Settings
from fanout.publish import AsyncBackgroundPublisher, BackgroundPublisher

settings = Settings(env="dev", aws_endpoint_url=sys.argv[1], queue_name=sys.argv[2])
mode = sys.argv[3]
EVENTS = 305  # the last 5 wait out the 60 s linger: some are always left for the exit flush
if mode == "sigterm_app":
    def app_handler(signum, frame):
        print("app handler ran", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, app_handler)

def report(ids, pending):
    print(json.dumps({"ids": ids, "pending": pending}), flush=True)

if mode == "exit_async":
    async def main():
        pub = await AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), linger_ms=60_000).start()
        ids = [await pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"}) for i in range(EVENTS)]
        report(ids, pub.pending)  # the loop ends here: its tasks are cancelled, atexit sends the rest
    asyncio.run(main())
elif mode == "exit_unstarted":  # made at import, published to, never started (no lifespan, no async with)
    pub = AsyncBackgroundPublisher(settings, registry=CollectorRegistry())
    async def main():
        ids = [await pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"}) for i in range(EVENTS)]
        report(ids, pub.pending)
    asyncio.run(main())
else:
    pub = BackgroundPublisher(settings, registry=CollectorRegistry(), linger_ms=60_000)
    ids = [pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"}) for i in range(EVENTS)]
    report(ids, pub.pending)
    if mode.startswith("sigterm"):
        for _ in range(600):  # the parent sends SIGTERM (short sleeps: see _SIGTERM_SCRIPT)
            time.sleep(0.1)
"""


@pytest.mark.parametrize("mode", ["exit", "exit_async", "exit_unstarted", "sigterm_default", "sigterm_app"])
def test_buffered_events_are_sent_at_exit_and_on_sigterm(
    moto_server: Server, tmp_path: Path, mode: str
) -> None:
    """A process that publishes and exits (the async form even never started), or is sent SIGTERM, has
    sent every event it buffered; only the async form's batches in flight at the loop's end may go twice."""
    settings = queue_for(moto_server)
    script = tmp_path / "publisher.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    with QueueReceiver(settings) as receiver:
        process = subprocess.Popen(
            [sys.executable, str(script), moto_server.url, settings.queue_name, mode],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "FANOUT_LOG_FORMAT": "json"},
        )  # fmt: skip
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        if mode.startswith("sigterm"):
            process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # its stacks, then killed and read: no open pipe outlives this test
            process.send_signal(signal.SIGABRT)
            try:
                out, err = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
            pytest.fail(f"the publisher was still running 60 s after {mode}; its stderr: {err[-10_000:]}")
        arrived = receiver.wait_sent(305)
    assert first["pending"] > 0, "nothing was left for the exit flush to send"
    assert set(first["ids"]) == set(arrived)
    # The async form's batches in flight when the loop ended went again (their fate was unknown): at most
    # one batch per sender, with the same ids. The threads' flush sends each event once.
    assert sum(n - 1 for n in arrived.values()) <= (40 if mode == "exit_async" else 0)
    if mode == "sigterm_app":
        assert "app handler ran" in out
        assert 0 == process.returncode
    elif mode == "sigterm_default":
        assert -signal.SIGTERM == process.returncode
    else:
        assert 0 == process.returncode, err[-2000:]


class Either:
    """The thread-based or the task-based publisher behind the same awaitable calls."""

    def __init__(self, pub: BackgroundPublisher | AsyncBackgroundPublisher) -> None:
        self.pub = pub

    async def send(self, body: QueueBody) -> str:
        if isinstance(self.pub, AsyncBackgroundPublisher):
            return await self.pub.send(body)
        return self.pub.send(body)

    async def flush(self, timeout_s: float) -> int:
        if isinstance(self.pub, AsyncBackgroundPublisher):
            return await self.pub.flush(timeout_s)
        return await asyncio.to_thread(self.pub.flush, timeout_s)


@asynccontextmanager
async def publisher(kind: str, settings: Settings, registry: CollectorRegistry) -> AsyncIterator[Either]:
    """A background publisher of ``kind`` (threads or tasks) that sends only on a flush."""
    options: dict[str, Any] = {"registry": registry, "linger_ms": 60_000, "sigterm": False}
    if kind == "tasks":
        async with AsyncBackgroundPublisher(settings, **options) as pub:
            yield Either(pub)
    else:
        sync = BackgroundPublisher(settings, **options)
        try:
            yield Either(sync)
        finally:
            await asyncio.to_thread(sync.close)


def notification(users: int = 1) -> QueueBody:
    return build_event(
        "notification.new",
        user_ids=[f"user-{i:07d}" for i in range(users)],
        payload=payload("notification.new"),
    )


@pytest.mark.parametrize("kind", ["threads", "tasks"])
async def test_a_missing_queue_keeps_every_event_until_it_is_back(moto_server: Server, kind: str) -> None:
    """A 400 that is the queue's (AWS.SimpleQueueService.NonExistentQueue, as a KMS grant's would be)
    drops nothing: a lone event over 256 KiB and a small one stay buffered and retried, and both arrive
    once the queue exists again; only a message SQS refuses for its content is dropped."""
    settings = queue_for(moto_server)
    registry = CollectorRegistry()
    big, small = notification(20_000), notification()  # about 300 KB, sent alone with SendMessage
    sqs = sqs_client(settings)
    with QueueReceiver(settings) as receiver:
        async with publisher(kind, settings, registry) as pub:
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"])
            await pub.send(big)
            await pub.send(small)
            during = await pub.flush(0.75)  # SQS answers 400 NonExistentQueue all along: 3 tries or so
            refused = value(registry, "fanout_publisher_failed_total")
            create_queues(settings)
            after = await pub.flush(20)
        arrived = receiver.wait_sent(2)
    sqs.close()
    assert (2, 0) == (during, refused)
    assert 0 == after
    assert {big.id: 1, small.id: 1} == arrived
    assert 2 <= value(registry, "fanout_publisher_retried_total")


@pytest.mark.parametrize("kind", ["threads", "tasks"])
async def test_a_batch_sqs_refuses_whole_goes_one_by_one(moto_server: Server, kind: str) -> None:
    """A SendMessageBatch SQS refuses whole for one body (over the queue's MaximumMessageSize of 1 KiB)
    goes again entry by entry: the entries around it arrive and only that one is refused and counted,
    instead of the whole batch coming back for ever."""
    settings = queue_for(moto_server)
    registry = CollectorRegistry()
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MaximumMessageSize": "1024"})
    sqs.close()
    before, big, after = notification(), notification(100), notification()  # big: about 2.4 KB
    with QueueReceiver(settings) as receiver:
        async with publisher(kind, settings, registry) as pub:
            for body in (before, big, after):
                await pub.send(body)
            left = await pub.flush(10)
        arrived = receiver.wait_sent(2)
    assert 0 == left
    assert {before.id: 1, after.id: 1} == arrived
    assert 1 == value(registry, "fanout_publisher_failed_total", reason="refused")
    assert 2 == value(registry, "fanout_publisher_sent_total")


def test_a_publish_waiting_for_room_when_close_ends_is_refused_not_lost(moto_server: Server) -> None:
    """A full buffer, a publish waiting for room, and a close() whose flush times out while the batch
    in flight is slow: the waiting publish is refused with PublisherClosed at the close, while that
    batch's call is still held. Before, it was buffered with nothing left to send it, its id returned,
    neither sent nor counted; then it waited for the call to end, or for block_ms when the call failed
    (its retry freed no slot: CI saw it wait 15 s)."""
    settings = queue_for(moto_server)
    registry = CollectorRegistry()
    first, second = notification(), notification()
    outcome: list[object] = []
    held: list[int] = []  # SendMessageBatch calls under way when the waiting publish was answered

    def publish_second() -> None:
        try:
            outcome.append(pub.send(second))
        except PublisherClosed as exc:
            outcome.append(exc)
        held.append(front._batches_now)

    with QueueReceiver(settings) as receiver, SlowFront(str(settings.aws_endpoint_url), 1.5) as front:
        slow = settings.model_copy(update={"aws_endpoint_url": front.url})
        options: dict[str, Any] = {"buffer": 1, "block_ms": 10_000, "linger_ms": 0, "sigterm": False}
        pub = BackgroundPublisher(slow, registry=registry, **options)
        pub.send(first)  # in flight, held 1.5 s
        waiter = threading.Thread(target=publish_second)
        waiter.start()
        time.sleep(0.2)  # waiting for the one slot
        assert 1 == pub.close(0.2)  # the first is still in flight: counted unsent
        waiter.join(10)
        arrived = receiver.wait_sent(1)
    assert 1 == len(outcome) and isinstance(outcome[0], PublisherClosed), outcome
    assert [1] == held  # refused at the close, not once the call ended
    assert {first.id: 1} == arrived  # it was in flight; its fate was unknown at close
    assert 0 == pub.pending
    # counted once, at the close: the call that ended after it does not count it again (it read -1)
    assert 0 == registry.get_sample_value("fanout_publisher_pending")


@pytest.mark.parametrize("kind", ["threads", "tasks"])
async def test_on_a_fifo_queue_a_keys_batches_do_not_race(moto_server: Server, kind: str) -> None:
    """Twenty events of one key on a FIFO queue, flushed at once, make two batches; SQS is slow to answer
    the first. The second waits for it, so the key's events are in the queue in the order they were
    published (before, the senders sent both at once and the second batch went in first: 11-20, 1-10)."""
    suffix = secrets.token_hex(4)
    settings = dev_settings(
        moto_server, queue_name=f"fanout-{suffix}.fifo", dlq_name=f"fanout-dlq-{suffix}.fifo"
    )
    create_queues(settings)
    bodies = [
        build_event("notification.new", user_ids=["u1"], payload=payload("notification.new"), ordering_key="user:u1", seq=i)
        for i in range(1, 21)
    ]  # fmt: skip
    with SlowFront(str(settings.aws_endpoint_url), 1.0, hold=bodies[0].id) as front:
        slow = settings.model_copy(update={"aws_endpoint_url": front.url})
        async with publisher(kind, slow, CollectorRegistry()) as pub:
            for body in bodies:
                await pub.send(body)
            left = await pub.flush(10)
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"]
    seqs = queued_seqs(sqs, url)
    sqs.close()
    assert (0, 2) == (left, front.batches)
    assert list(range(1, 21)) == seqs


@pytest.mark.parametrize("kind", ["threads", "tasks"])
async def test_on_a_fifo_queue_a_group_in_flight_holds_back_only_its_own_events(
    moto_server: Server, kind: str
) -> None:
    """Interleaved keys on a FIFO queue (a hot key every other event), SQS slow to answer the first batch
    and failing every entry of the second call once: batches of other keys go beside the first, so more
    than one call is in flight at once, and each key's events are in the queue in publish order, the
    retried ones included (before, the hot key at the head of the buffer held every batch back)."""
    suffix = secrets.token_hex(4)
    settings = dev_settings(
        moto_server, queue_name=f"fanout-{suffix}.fifo", dlq_name=f"fanout-dlq-{suffix}.fifo"
    )
    create_queues(settings)
    bodies = [
        build_event("notification.new", user_ids=["u1"], payload=payload("notification.new"),
                    ordering_key=interleaved_key(seq), seq=seq)
        for seq in range(1, 61)
    ]  # fmt: skip
    with SlowFront(str(settings.aws_endpoint_url), 1.0, hold=bodies[0].id, throttle_call=2) as front:
        slow = settings.model_copy(update={"aws_endpoint_url": front.url})
        async with publisher(kind, slow, CollectorRegistry()) as pub:
            for body in bodies:
                await pub.send(body)
            left = await pub.flush(20)
    sqs = sqs_client(settings)
    seqs = queued_seqs(sqs, sqs.get_queue_url(QueueName=settings.queue_name)["QueueUrl"])
    sqs.close()
    assert (0, list(range(1, 61))) == (left, sorted(seqs))
    assert 1 < front.most_batches
    assert {key: sorted(keyed) for key, keyed in by_key(seqs).items()} == by_key(seqs)


_SILENT_SCRIPT = """
import asyncio, sys
from prometheus_client import CollectorRegistry
from fanout.config import Settings
from fanout.publish import AsyncBackgroundPublisher

endpoint = sys.argv[1]
settings = Settings(env="dev", aws_endpoint_url=endpoint, queue_url=f"{endpoint}/123456789012/q")

async def main():
    pub = await AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), flush_s=1).start()
    for i in range(30):
        await pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"})
    print(pub.pending, flush=True)  # the loop ends: atexit sends what is left, within flush_s
asyncio.run(main())
"""


@pytest.mark.timeout(120)
def test_the_exit_flush_keeps_to_its_budget_when_sqs_does_not_answer(tmp_path: Path) -> None:
    """SQS accepts connections and never answers: the async publisher's exit flush of three batches gives
    up within about FANOUT_PUBLISH_FLUSH_S (1 s here) and names the 30 events it could not send. Before,
    every batch waited out the client's 10 s read timeout in turn (31 s; the default 10,000-event buffer
    took hours), so an orchestrator's SIGKILL came first and nothing was counted or logged."""
    script = tmp_path / "publisher.py"
    script.write_text(textwrap.dedent(_SILENT_SCRIPT))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the backlog; no request is ever read
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        process = subprocess.Popen(
            [sys.executable, str(script), endpoint],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "FANOUT_LOG_FORMAT": "json"},
        )  # fmt: skip
        assert process.stdout is not None
        assert "30" == process.stdout.readline().strip()
        started = time.monotonic()
        try:
            out, _ = process.communicate(timeout=60)
        finally:
            process.kill()
        took = time.monotonic() - started
    unsent = [line for line in out.splitlines() if "publisher_closed_unsent" in line]  # structlog's default
    assert took < 8, f"the exit flush took {took:.1f} s"
    assert 1 == len(unsent) and "count=30" in unsent[0], out[-2000:]


_SIGTERM_SCRIPT = """
import os, signal, sys, time
from prometheus_client import CollectorRegistry
from fanout.config import Settings
from fanout.publish import BackgroundPublisher

endpoint = sys.argv[1]
settings = Settings(env="dev", aws_endpoint_url=endpoint, queue_url=f"{endpoint}/123456789012/q")
first = BackgroundPublisher(settings, registry=CollectorRegistry(), flush_s=1)
second = BackgroundPublisher(settings, registry=CollectorRegistry(), flush_s=1)  # chains to the first's hook
for pub, count in ((first, 10), (second, 15)):
    for i in range(count):
        pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"})
print("published", flush=True)
for _ in range(600):  # the parent sends SIGTERM: short sleeps, so one that lands just before a sleep
    time.sleep(0.1)   # starts is handled within 0.1 s, not once a 60 s sleep has ended
"""


@pytest.mark.timeout(120)
def test_a_sigterm_that_ends_the_process_names_what_could_not_be_sent(tmp_path: Path) -> None:
    """SQS does not answer and SIGTERM keeps its default action: before the process ends, each of two
    publishers (the second's hook chained to the first's) counts and names, by id, the events it could
    not send within its flush budget, as at exit. Before, each only logged publisher_flush_incomplete
    with a number, and the events went with the process, unnamed."""
    script = tmp_path / "publisher.py"
    script.write_text(textwrap.dedent(_SIGTERM_SCRIPT))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the backlog; no request is ever read
        process = subprocess.Popen(
            [sys.executable, str(script), f"http://127.0.0.1:{silent.getsockname()[1]}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        assert "published" == process.stdout.readline().strip()
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=60)
        finally:
            process.kill()
    unsent = [line for line in out.splitlines() if "publisher_closed_unsent" in line]  # structlog's default
    assert -signal.SIGTERM == process.returncode
    assert ["15", "10"] == [line.split("count=")[1].split()[0] for line in unsent], out[-2000:]
    assert all(line.count("evt_") == n for line, n in zip(unsent, (15, 10), strict=True))


@pytest.mark.parametrize("kind", ["threads", "tasks"])
async def test_a_publish_waiting_for_room_behind_unsent_events_is_refused_at_close(kind: str) -> None:
    """SQS unreachable: the one slot holds an event that keeps failing, a second publish waits for room,
    and close() gives up on the first. The waiting publish is refused with PublisherClosed then, not
    after block_ms with PublishBufferFull (close() freed no slot of an event merely buffered)."""
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens: every call is refused at once
    settings = dev_settings().model_copy(
        update={"aws_endpoint_url": gone, "queue_url": f"{gone}/000000000000/q"}
    )
    options: dict[str, Any] = {"buffer": 1, "block_ms": 20_000, "linger_ms": 0, "sigterm": False}
    first, second = notification(), notification()
    started = time.monotonic()
    if kind == "threads":
        pub = BackgroundPublisher(settings, registry=CollectorRegistry(), **options)
        pub.send(first)
        outcome: list[object] = []

        def publish_second() -> None:
            try:
                outcome.append(pub.send(second))
            except Exception as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=publish_second)
        waiter.start()
        time.sleep(0.3)
        assert 1 == pub.close(0.2)
        waiter.join(15)
        [refused] = outcome
    else:
        apub = AsyncBackgroundPublisher(settings, registry=CollectorRegistry(), **options)
        await apub.send(first)
        waiting = asyncio.create_task(apub.send(second))
        await asyncio.sleep(0.3)
        assert 1 == await apub.close(0.2)
        [refused] = await asyncio.gather(waiting, return_exceptions=True)
    assert isinstance(refused, PublisherClosed), refused
    assert time.monotonic() - started < 15  # refused at the close, not after block_ms (20 s)


_FORK_SCRIPT = """
import json, os, sys
from prometheus_client import CollectorRegistry
from fanout.config import Settings
from fanout.publish import BackgroundPublisher

settings = Settings(env="dev", aws_endpoint_url=sys.argv[1], queue_name=sys.argv[2])
pub = BackgroundPublisher(settings, registry=CollectorRegistry(), flush_s=5)  # made before the fork: --preload
read, write = os.pipe()
if os.fork() == 0:  # a gunicorn worker
    ids = [pub.publish("notification.new", user_ids=["u1"], payload={"notificationId": f"n{i}"}) for i in range(25)]
    unsent = pub.flush(5)
    os.write(write, json.dumps({"ids": ids, "unsent": unsent}).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as child:
    print(child.read(), flush=True)
os.wait()
pub.close()
"""


def test_a_publisher_made_before_a_fork_sends_from_the_child(moto_server: Server, tmp_path: Path) -> None:
    """A BackgroundPublisher made before a fork (gunicorn --preload) sends the child's events, none lost."""
    settings = queue_for(moto_server)
    script = tmp_path / "preload.py"
    script.write_text(_FORK_SCRIPT)
    with QueueReceiver(settings) as receiver:
        done = subprocess.run(
            [sys.executable, str(script), moto_server.url, settings.queue_name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr[-2000:]
        child = json.loads(done.stdout)
        arrived = receiver.wait_sent(25)
    assert 0 == child["unsent"]
    assert set(child["ids"]) == set(arrived)
