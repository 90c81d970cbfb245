"""Small helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http.client
import http.server
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import boto3
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from fanout.config import Settings
from fanout.lifecycle import limits
from fanout.lifeline import die_with_parent
from fanout.store import ConnectionStore
from fanout.tokens import sign

if TYPE_CHECKING:
    from tests.conftest import Stack


class Client:
    """A real WebSocket client of one user, collecting every frame it receives."""

    def __init__(self, user_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.user_id = user_id
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    def events(self) -> list[dict[str, Any]]:
        """Frames that are events (not replies such as ping.pong)."""
        return [f for f in self.frames if "id" in f]

    def event_ids(self) -> list[str]:
        """The ids of the events received, in order."""
        return [e["id"] for e in self.events()]

    async def ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a client action and return the answer that names it."""
        ref = secrets.token_hex(4)
        await self.ws.send_json(frame | {"id": ref})
        await wait_for(lambda: any(f.get("replyTo") == ref for f in self.frames))
        return next(f for f in self.frames if f.get("replyTo") == ref)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def connect(
    stack: AsyncExitStack, http: aiohttp.ClientSession, url: str, settings: Settings, user_id: str
) -> Client:
    """Connect a client with a fresh token; returns once its connection record exists."""
    ws = await http.ws_connect(url, params={"token": sign(user_id, settings.jwt_key())})
    client = Client(user_id, ws)
    stack.push_async_callback(client.close)
    await ws.send_json({"action": "ping"})
    await wait_for(lambda: any(f.get("type") == "ping.pong" for f in client.frames))
    return client


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 15, every: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true; fail the test with a timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


def open_store(settings: Settings) -> tuple[AsyncMongoClient[dict[str, Any]], ConnectionStore]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo(), tz_aware=True)
    return client, ConnectionStore.from_client(client, settings.mongo_db, settings.connections_collection)


def sqs_client(settings: Settings) -> Any:
    return boto3.client("sqs", **settings.aws_client_kwargs())


def queue_depth(settings: Settings, queue_name: str) -> int:
    """Messages in a queue: visible, in flight (received, not yet deleted) and delayed."""
    sqs = sqs_client(settings)
    try:
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)
    finally:
        sqs.close()


async def settled(settings: Settings, clients: list[Client], timeout: float = 30) -> None:
    """Nothing more will be posted to ``clients``, and they have read all that was: the events and bulk
    queues of ``settings`` hold no message (a worker deletes one only once its posts were answered and its
    remainder written), then each client's ping is answered (after every frame posted to it before).

    For queues of one test's own, with a worker that stays up, and messages whose visibility never
    lapses: a worker still holding a copy of a message that lapsed, whose other copy was deleted, is not
    seen in the queue (the tests of lapses keep a settling time)."""

    async def empty() -> bool:
        depths = await asyncio.gather(
            *(
                asyncio.to_thread(queue_depth, settings, q)
                for q in (settings.queue_name, settings.bulk_queue_name)
            )
        )
        return not any(depths)

    await wait_for(empty, timeout=timeout, every=0.1)
    await asyncio.gather(*(c.ask({"action": "ping"}) for c in clients))


def drain_queue(settings: Settings, queue_name: str, wait_s: int = 1) -> list[dict[str, Any]]:
    """Receive and delete everything in a queue (with attributes)."""
    sqs = sqs_client(settings)
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        reply = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s, MessageAttributeNames=["All"]
        )
        messages = reply.get("Messages", [])
        if not messages:
            break
        out.extend(messages)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    sqs.close()
    return out


class Proxy:
    """A TCP proxy in front of a server that can refuse connections, like an endpoint outage, or go
    silent: with ``silent`` set it accepts connections and forwards nothing either way, like a server
    that hangs (or a network path that drops packets) while its connections stay open."""

    def __init__(self, port: int, upstream: int) -> None:
        self.port, self.upstream = port, upstream
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.serving = False
        self.silent = False
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.serving = True
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.serving = False
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)  # each ends on its aborted socket

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A connection accepted just before a stop, or stopped while the upstream connects, is cut here:
        # left open, it outlived the test (an unclosed transport at the end).
        if not self.serving:
            writer.transport.abort()
            return
        self.writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        if self.silent:  # read and drop until the client gives up or the proxy stops
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
            writer.transport.abort()
            self.writers.discard(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            up_writer = None
        if up_writer is None or not self.serving or writer.transport.is_closing():
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
            self.writers.discard(writer)
            return
        self.writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if not self.silent:
                        dst.write(data)
                        await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


class WorkerPool:
    """`fanout worker --processes N` as its own process, like ECS runs it."""

    def __init__(self, stack: Stack, log: Path, processes: int = 2, **env: str) -> None:
        self.stack = stack
        self.log = log
        self.processes = processes
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fanout", "worker", "--processes", str(self.processes)],
                env={**os.environ, **self.stack.env, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def ready(self) -> None:
        async def answers() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{self.stack.metrics_url}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(answers, timeout=60)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class Scrape:
    """One scrape of a worker's /metrics, summed over the samples that match a name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by(self, label: str, name: str, **labels: str) -> collections.Counter[str]:
        """The samples of ``name`` that match ``labels``, summed by their ``label`` (e.g. outcome)."""
        summed: collections.Counter[str] = collections.Counter()
        for s in self.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                summed[s.labels[label]] += int(s.value)
        return summed


async def scrape(metrics_url: str) -> Scrape:
    async with aiohttp.ClientSession() as http, http.get(f"{metrics_url}/metrics") as r:
        return Scrape(await r.text())


class ReadyWatch:
    """Polls /readyz in the background and keeps every status it saw (0: no answer), with its time."""

    def __init__(self, metrics_url: str, every: float = 0.1) -> None:
        self.url = f"{metrics_url}/readyz"
        self.every = every
        self.seen: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReadyWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while True:
                try:
                    async with http.get(self.url) as r:
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                self.seen.append((time.monotonic(), status))
                await asyncio.sleep(self.every)

    def statuses(self) -> set[int]:
        return {status for _, status in self.seen}

    def first(self, status: int, since: float) -> float | None:
        """When ``status`` was first seen at or after ``since`` (monotonic), if it was."""
        return next((at for at, s in self.seen if at >= since and s == status), None)


class QueueReceiver:
    """Receives and deletes a queue's messages on threads while a test runs, counting each event id once
    per SQS message (a message received again is not counted twice).

    Receiving while publishing keeps the queue shallow, as a worker would. Calls that fail (the queue
    stopped) are retried, so it rides through an outage.
    """

    def __init__(self, settings: Settings, threads: int = 3) -> None:
        self.settings = settings
        self.ids: collections.Counter[str] = collections.Counter()
        self.bodies: list[dict[str, Any]] = []
        self.message_ids: collections.defaultdict[str, list[str]] = collections.defaultdict(list)
        self.redelivered = 0  # the same SQS message received again
        self._in_hand = 0  # messages received and not yet counted
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> QueueReceiver:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        sqs = sqs_client(self.settings)
        url = ""
        while not self._stop.is_set():
            held = 0
            try:
                url = url or sqs.get_queue_url(QueueName=self.settings.queue_name)["QueueUrl"]
                # Short polls, pausing only on an empty queue: a long poll returns with the first message of
                # a batch being sent, and receives of one or two would make moto the bottleneck.
                reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
                messages = reply.get("Messages", [])
                if not messages:
                    time.sleep(0.02)
                if messages:
                    held = len(messages)
                    with self._lock:  # in hand before they leave the queue (see _drained)
                        self._in_hand += held
                    deleted = sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(messages)
                        ],
                    )
                    assert not deleted.get("Failed"), deleted["Failed"]
            except Exception:
                with self._lock:
                    self._in_hand -= held
                time.sleep(0.2)
                continue
            with self._lock:
                self._in_hand -= held
                for m in messages:
                    body = json.loads(m["Body"])
                    if m["MessageId"] in self.message_ids[body["id"]]:
                        # moto handed one message to two concurrent receives: SQS's at-least-once, not a
                        # second send; only a new MessageId for the same event is one
                        self.redelivered += 1
                        continue
                    self.ids[body["id"]] += 1
                    self.bodies.append(body)
                    self.message_ids[body["id"]].append(m["MessageId"])
        sqs.close()

    def total(self) -> int:
        with self._lock:
            return sum(self.ids.values())

    async def until(self, count: int, timeout: float = 60, settle_s: float = 1.0) -> collections.Counter[str]:
        """``wait`` without blocking the event loop (for tests whose relays run on it)."""
        return await asyncio.to_thread(self.wait, count, timeout, settle_s)

    async def until_sent(self, count: int, timeout: float = 60) -> collections.Counter[str]:
        """``wait_sent`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_sent, count, timeout)

    def wait(self, count: int, timeout: float = 60, settle_s: float = 1.0) -> collections.Counter[str]:
        """Wait until ``count`` messages arrived, then ``settle_s`` more for any duplicate; the counts."""
        deadline = time.monotonic() + timeout
        while self.total() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(settle_s)
        with self._lock:
            return collections.Counter(self.ids)

    def wait_sent(self, count: int, timeout: float = 60) -> collections.Counter[str]:
        """For a sender that has finished: wait until ``count`` messages arrived and the queue is drained,
        so every message it sent, duplicates included, is counted without a settling time; the counts."""
        deadline = time.monotonic() + timeout
        while self.total() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        sqs = sqs_client(self.settings)
        try:
            url = sqs.get_queue_url(QueueName=self.settings.queue_name)["QueueUrl"]
            while not self._drained(sqs, url) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            sqs.close()
        with self._lock:
            return collections.Counter(self.ids)

    def _drained(self, sqs: Any, url: str) -> bool:
        """The queue holds no message (visible, received or delayed), then none is still being counted.
        In that order: a message leaves the queue only once it is in hand, so every one the queue held
        before the first read is counted once the second reads zero."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        if any(int(attributes[name]) for name in names):
            return False
        with self._lock:
            return self._in_hand == 0


def queued_seqs(sqs: Any, url: str) -> list[int]:
    """The ``meta.seq`` of every message of a queue, in the order the queue hands them out (each deleted
    as it comes, so a FIFO group gives its next)."""
    seqs: list[int] = []
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Short polls: the queue is complete before this is called. An empty one ends the read only once the
        # queue holds nothing (a long poll's last empty wait cost a second per call).
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages"
        )
        if not messages:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            if not any(int(attributes[name]) for name in names):
                break
            time.sleep(0.05)
            continue
        for message in messages:
            seqs.append(json.loads(message["Body"])["meta"]["seq"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return seqs


def interleaved_key(seq: int) -> str:
    """A hot key every other event, between 50 keys of two events each (seq 1 to 200)."""
    return "user:hot" if seq % 2 else f"user:k{seq % 100}"


def by_key(seqs: list[int]) -> dict[str, list[int]]:
    """The seqs of each key (``interleaved_key``), in the order given."""
    keys: dict[str, list[int]] = {}
    for seq in seqs:
        keys.setdefault(interleaved_key(seq), []).append(seq)
    return keys


class SqsFront:
    """An HTTP server in front of moto (the JSON protocol) that hands every call on, except that
    ``batch(entries)`` sees each ``SendMessageBatch`` first: it may wait (SQS slow to answer) or return
    a reply of its own, which moto never sees (SQS failing entries for the moment).

    ``most_batches``: the most ``SendMessageBatch`` calls it had under way at once, each counted from its
    request until its reply is ready (before it is written, so a sender's next call never overlaps it)."""

    def __init__(self, upstream: str) -> None:
        host, port = urllib.parse.urlsplit(upstream).netloc.split(":")
        outer = self
        self.most_batches = 0
        self._batches_now = 0
        self._count = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                target = self.headers.get("X-Amz-Target", "")
                if not target.endswith(".SendMessageBatch"):
                    outer.call(target.rpartition(".")[2])
                    self._answer(*self._forward(body))
                    return
                with outer._count:
                    outer._batches_now += 1
                    outer.most_batches = max(outer.most_batches, outer._batches_now)
                try:
                    own = outer.batch(json.loads(body)["Entries"])
                    if own is None:
                        reply = self._forward(body)
                    else:
                        reply = 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(own).encode()
                finally:
                    with outer._count:
                        outer._batches_now -= 1
                self._answer(*reply)

            def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
                up = http.client.HTTPConnection(host, int(port), timeout=10)
                up.request(
                    "POST", self.path, body, {k: v for k, v in self.headers.items() if k.lower() != "host"}
                )
                reply = up.getresponse()
                answer = reply.status, dict(reply.getheaders()), reply.read()
                up.close()
                return answer

            def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "date",
                        "server",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def batch(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A ``SendMessageBatch`` about to go to moto: None hands it on; a reply answers it instead."""
        return None

    def call(self, action: str) -> None:
        """Any other call (``SendMessage``, ``ReceiveMessage``...) about to go to moto: it may wait."""

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class SlowFront(SqsFront):
    """Holds one ``SendMessageBatch`` for ``delay_s`` before moto gets it (SQS slow to answer): the first
    whose event ids include ``hold``, else the first of all. ``throttle_call``: the call of that number
    (1 the first) has every entry failed for the moment, as ``ThrottlingFront`` fails them."""

    def __init__(
        self, upstream: str, delay_s: float, hold: str | None = None, throttle_call: int = 0
    ) -> None:
        super().__init__(upstream)
        self.delay_s, self.hold, self.batches, self.held = delay_s, hold, 0, False
        self.throttle_call = throttle_call

    def batch(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        with self._count:
            self.batches += 1
            number = self.batches
        if number == self.throttle_call:
            return throttled(entries)
        ids = [json.loads(e["MessageBody"])["id"] for e in entries]
        if not self.held and (self.hold is None or self.hold in ids):
            self.held = True
            time.sleep(self.delay_s)
        return None


def throttled(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``SendMessageBatch`` reply that fails every entry as SQS fails one it cannot take for the moment
    (``RequestThrottled``, not the sender's fault)."""
    failed = [
        {"Id": e["Id"], "SenderFault": False, "Code": "RequestThrottled", "Message": "slow down"}
        for e in entries
    ]
    return {"Successful": [], "Failed": failed}


class ThrottlingFront(SqsFront):
    """Answers the first ``throttle`` ``SendMessageBatch`` calls itself, every entry failed (``throttled``)."""

    def __init__(self, upstream: str, throttle: int) -> None:
        super().__init__(upstream)
        self.throttle, self.throttled, self.sent = throttle, 0, 0

    def batch(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        self.sent += 1
        if self.throttled >= self.throttle:
            return None
        self.throttled += 1
        return throttled(entries)


async def at_window_start(room_s: float = 6, window_s: float = limits.WINDOW_S) -> None:
    """Wait for a fresh rate window when less than ``room_s`` of this one are left: the lifecycle's
    limits count per wall-clock window (``window_s``; FANOUT_FORWARD_WINDOW_S for forwarded frames), so
    frames sent at once across a boundary get two windows' worth."""
    if time.time() % window_s > window_s - room_s:
        await asyncio.sleep(window_s - time.time() % window_s)
