"""``fanout bench``: the worker against the inline design, aiobotocore and a bare-HTTP floor, on one stack.

Everything runs on 127.0.0.1: a ``LocalStack`` on free ports (moto, SecantusDB, the emulator and the
worker, each its own process), real WebSocket clients in a separate process (``sink``), and the
baselines in this process. CPU is per process: the worker's from ``/proc/<pid>/stat`` (the worker and
its children), the baselines' from ``time.process_time`` here, so neither the emulator, the clients nor
moto count against anyone.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import boto3
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from pymongo import MongoClient

from fanout.bench import sink
from fanout.config import Settings
from fanout.envelope import QueueBody
from fanout.gateway.http import HttpClient
from fanout.gateway.http import frame as frame_request
from fanout.local.stack import DEV_DEFAULTS, LocalStack
from fanout.publish import Publisher, build_event

EVENT_TYPE = "notification.new"
FRAME_BYTES = 1024
CONCURRENCY = 64  # posts in flight for the aiobotocore and floor baselines
STATIC_AUTH = (  # the emulator wants a SigV4-shaped header; the floor sends this one, unsigned work-free
    "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/execute-api/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)
DUMMY_KEYS: dict[str, Any] = {"aws_access_key_id": "fanout-bench", "aws_secret_access_key": "fanout-bench"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    """How much work each phase does."""

    mode: str
    users: int = 1000  # one WebSocket connection each
    throughput_posts: dict[int, int] = field(default_factory=dict)  # fan-out -> posts
    latency_s: float = 5.0
    publish_calls: int = 50
    inline_calls: dict[int, int] = field(default_factory=dict)  # audience -> request-path calls
    inline_posts: int = 400  # posts for the inline baseline's CPU and throughput at fan-out 20
    baseline_posts: int = 2000  # posts for aiobotocore and the floor
    soak_s: float = 0.0
    pool: tuple[int, ...] = ()


QUICK = Plan(
    mode="quick",
    throughput_posts={1: 400, 20: 2000, 200: 2000},
    latency_s=4.0,
    publish_calls=40,
    inline_calls={1: 20, 100: 4, 1000: 2},
    inline_posts=400,
    baseline_posts=2000,
)
FULL = Plan(
    mode="full",
    throughput_posts={1: 2000, 20: 30000, 200: 40000},
    latency_s=20.0,
    publish_calls=300,
    inline_calls={1: 200, 100: 30, 1000: 10},
    inline_posts=4000,
    baseline_posts=20000,
    soak_s=600.0,  # the issue's "after 10 minutes of sustained load"
    pool=(1, 2),
)
AUDIENCES = (1, 100, 1000)


# ---------------------------------------------------------------- process accounting (/proc)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its live descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields_ = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields_[11]) + int(fields_[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy (``/proc/stat``): all processes, ours or not."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def rss_mb(root: int) -> list[float]:
    """Resident set size of each process in the tree, MB."""
    out = []
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        out.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return out


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": list(os.getloadavg()),
    }


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))
    return ordered[rank]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 50), 3),
        "p95": round(pct(values, 95), 3),
        "p99": round(pct(values, 99), 3),
        "n": len(values),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payload_for(size: int = FRAME_BYTES) -> dict[str, Any]:
    """A payload whose client frame is exactly ``size`` bytes."""
    probe = build_event(EVENT_TYPE, user_ids=["u"], payload={"notificationId": "n1", "body": ""})
    pad = size - len(probe.client_frame)
    return {"notificationId": "n1", "body": "x" * max(0, pad)}


# ---------------------------------------------------------------- the bench


class Bench:
    def __init__(self, plan: Plan, echo: Callable[[str], None]) -> None:
        self.plan = plan
        self.echo = echo
        suffix = secrets.token_hex(4)
        self.env = {
            "FANOUT_ENV": "dev",
            "FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
            "FANOUT_QUEUE_NAME": f"bench-{suffix}",
            "FANOUT_DLQ_NAME": f"bench-{suffix}-dlq",
            "FANOUT_TOPIC_NAME": f"bench-{suffix}",
            "FANOUT_GATEWAY_PORT": str(_free_port()),
            "FANOUT_METRICS_PORT": str(_free_port()),
            "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{_free_port()}",
            "FANOUT_MONGO_DB": f"bench_{suffix}",
            "FANOUT_LOG_LEVEL": "WARNING",
            "FANOUT_LOG_FORMAT": "json",
        }
        fields_: dict[str, Any] = {k[len("FANOUT_") :].lower(): v for k, v in self.env.items()}
        self.settings = Settings(**fields_)
        self.pub_queue = f"bench-{suffix}-publish"  # request-path timing only; no worker reads it
        s = self.settings
        self.origin = f"http://{s.gateway_host}:{s.gateway_port}"
        self.api_url = f"{self.origin}/{s.gateway_stage}"
        self.ws_url = f"ws://{s.gateway_host}:{s.gateway_port}/{s.gateway_stage}"
        self.users = [f"bu{i}" for i in range(plan.users)]
        self.payload = payload_for()
        self.stack: LocalStack | None = None
        self.pipe: Any = None
        self.sink_process: Any = None
        self.results: dict[str, Any] = {"checks": {}}

    # ---- stack and clients

    def start(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 8192):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.stack = LocalStack(self.settings, echo=lambda line: self.echo(line))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        self.stack.env = {**DEV_DEFAULTS, **clean, **self.env, "AWS_EC2_METADATA_DISABLED": "true"}
        self.echo(f"starting the local stack (logs in {self.stack.log_dir})")
        self.stack.start()
        sqs: Any = boto3.client("sqs", **self.settings.aws_client_kwargs())  # type: ignore[call-overload]
        sqs.create_queue(QueueName=self.pub_queue)
        sqs.close()
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.sink_process = ctx.Process(
            target=sink.main, args=(child, self.ws_url, self.settings.jwt_key()), daemon=True
        )
        self.sink_process.start()

    def stop(self) -> None:
        if self.pipe is not None and self.sink_process is not None and self.sink_process.is_alive():
            try:
                self.pipe.send(("close", {}))
                if self.pipe.poll(20):
                    self.pipe.recv()
            except (OSError, EOFError):
                pass
            self.sink_process.join(10)
            if self.sink_process.is_alive():
                self.sink_process.kill()
        if self.stack is not None:
            self.stack.stop()

    async def ask(self, command: str, **args: Any) -> Any:
        self.pipe.send((command, args))
        while not self.pipe.poll():  # no executor thread: an interrupted run must not hang on it
            await asyncio.sleep(0.005)
        return self.pipe.recv()

    @property
    def worker_pid(self) -> int:
        assert self.stack is not None
        part = self.stack.worker
        if part is None or part.process is None:
            raise RuntimeError("no worker process")
        return part.process.pid

    def audience(self, k: int, size: int) -> list[str]:
        start = (k * size) % len(self.users)
        return [self.users[(start + j) % len(self.users)] for j in range(size)]

    def event(self, k: int, fanout: int) -> QueueBody:
        return build_event(EVENT_TYPE, user_ids=self.audience(k, fanout), payload=self.payload)

    def check(self, phase: str, expected: int, received: int) -> None:
        self.results["checks"][phase] = {"expected": expected, "received": received}
        if received < expected:
            self.echo(f"  WARNING: {phase}: {received} of {expected} frames arrived")

    # ---- SQS sends

    async def send_all(self, sqs: Any, url: str, bodies: list[QueueBody], concurrency: int = 4) -> None:
        batches = deque(bodies[i : i + 10] for i in range(0, len(bodies), 10))

        async def pump() -> None:
            while batches:
                batch = batches.popleft()
                entries = [{"Id": str(i), "MessageBody": b.to_json()} for i, b in enumerate(batch)]
                reply = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
                if reply.get("Failed"):
                    raise RuntimeError(f"send_message_batch failed: {reply['Failed'][:1]}")

        await asyncio.gather(*(pump() for _ in range(concurrency)))

    # ---- phases

    async def throughput(self, sqs: Any, url: str, fanout: int, posts: int) -> dict[str, float]:
        events = max(1, posts // fanout)
        expected = events * fanout
        bodies = [self.event(k, fanout) for k in range(events)]
        await self.ask("reset")
        # Closed loop: keep a bounded backlog in the queue. A deep one would measure moto, whose
        # receive and delete scan every message in the queue, rather than the worker.
        window = max(10, min(200, 4000 // fanout))
        cpu0, busy0 = cpu_seconds(self.worker_pid), machine_busy_seconds()
        t0 = time.time()
        sent = 0
        while sent < events:
            done = (await self.ask("stats"))["total"] // fanout
            room = min(events - sent, window - (sent - done))
            if room >= min(10, events - sent):
                await self.send_all(sqs, url, bodies[sent : sent + room])
                sent += room
            else:
                await asyncio.sleep(0.01)
        stats = await self.ask("wait", expected=expected, timeout_s=120 + expected / 200)
        cpu1, busy1 = cpu_seconds(self.worker_pid), machine_busy_seconds()
        self.check(f"throughput_fanout_{fanout}", expected, stats["total"])
        elapsed = max(1e-6, stats["last_at"] - t0)
        delivered = max(1, stats["total"])
        return {
            "posts": delivered,
            "events": events,
            "seconds": round(elapsed, 3),
            "posts_per_s": round(delivered / elapsed, 1),
            "worker_cpu_us_per_post": round((cpu1 - cpu0) / delivered * 1e6, 1),
            "worker_cpu_share": round((cpu1 - cpu0) / elapsed, 3),
            # Cores busy with everything else: emulator, clients, moto, SecantusDB, this process, noise.
            "others_cpu_share": round((busy1 - busy0 - (cpu1 - cpu0)) / elapsed, 3),
        }

    async def steady(
        self,
        sqs: Any,
        url: str,
        fanout: int,
        posts_per_s: float,
        seconds: float,
        sample: Callable[[], None] | None,
    ) -> dict[str, Any]:
        """Offer ``posts_per_s`` at ``fanout`` for ``seconds``; latency as the clients see it."""
        rate = max(1.0, posts_per_s / fanout)  # events per second
        events = max(1, int(rate * seconds))
        await self.ask("reset")
        loop = asyncio.get_running_loop()
        tick = max(0.005, min(0.1, 1 / rate))
        start = loop.time()
        sent = 0
        pending: set[asyncio.Task[None]] = set()
        next_sample = start
        while sent < events:
            due = min(events, int((loop.time() - start) * rate) + 1)
            if due > sent:
                bodies = [self.event(k, fanout) for k in range(sent, due)]
                sent = due
                task = asyncio.create_task(self.send_all(sqs, url, bodies, concurrency=2))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if sample is not None and loop.time() >= next_sample:
                sample()
                next_sample += 5.0
            await asyncio.sleep(tick)
        await asyncio.gather(*pending)
        expected = events * fanout
        stats = await self.ask("wait", expected=expected, timeout_s=60 + expected / 200, latencies=True)
        self.check(f"latency_fanout_{fanout}", expected, stats["total"])
        lat = summary(stats["latencies_ms"])
        lat["offered_posts_per_s"] = round(rate * fanout, 1)
        return lat

    def publish_times(self) -> dict[str, dict[str, float]]:
        """``Publisher.publish`` call time at each audience size, against the local SQS.

        The queue is drained after every call, untimed, as a worker keeps a live queue drained (moto's
        ``SendMessage`` counts every message already queued). The sizes take turns call by call, so a
        noisy moment of the shared machine falls on all of them alike.
        """
        settings = self.settings.model_copy(update={"queue_name": self.pub_queue})
        publisher = Publisher(settings)
        sqs: Any = boto3.client("sqs", **self.settings.aws_client_kwargs())  # type: ignore[call-overload]
        url = sqs.get_queue_url(QueueName=self.pub_queue)["QueueUrl"]

        def drain() -> None:
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
                done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
                sqs.delete_message_batch(QueueUrl=url, Entries=done)

        times: dict[int, list[float]] = {size: [] for size in AUDIENCES}
        try:
            for size in AUDIENCES:
                for _ in range(5):
                    publisher.publish(EVENT_TYPE, user_ids=self.users[:size], payload=self.payload)
            drain()
            for _ in range(self.plan.publish_calls):
                for size, taken in times.items():
                    users = self.users[:size]
                    t = time.perf_counter()
                    publisher.publish(EVENT_TYPE, user_ids=users, payload=self.payload)
                    taken.append((time.perf_counter() - t) * 1000)
                    drain()
            return {str(size): summary(taken) for size, taken in times.items()}
        finally:
            sqs.close()
            publisher.close()

    def connection_ids(self, users: list[str]) -> list[str]:
        mongo: MongoClient[dict[str, Any]]
        with MongoClient(self.settings.mongo(), tz_aware=True) as mongo:
            col: Any = mongo[self.settings.mongo_db][self.settings.connections_collection]
            docs = col.find({"userId": {"$in": users}}, {"_id": 0, "connectionId": 1})
            return [d["connectionId"] for d in docs]

    def frames(self, events: int) -> list[bytes]:
        return [
            build_event(EVENT_TYPE, user_ids=["x"], payload=self.payload).client_frame for _ in range(events)
        ]

    # ---- baselines

    async def inline(self) -> dict[str, Any]:
        """(a) the seed's design in the request path: per user, read connections, then boto3 posts."""
        s = self.settings
        mongo: MongoClient[dict[str, Any]] = MongoClient(s.mongo(), tz_aware=True)
        col = mongo[s.mongo_db][s.connections_collection]
        api: Any = boto3.client(
            "apigatewaymanagementapi", endpoint_url=self.api_url, region_name=s.region, **DUMMY_KEYS
        )
        gone = api.exceptions.GoneException

        def publish_inline(user_ids: list[str]) -> int:
            frame = build_event(EVENT_TYPE, user_ids=user_ids, payload=self.payload).client_frame
            posts = 0
            for user in user_ids:
                now = datetime.now(UTC)
                for doc in col.find(
                    {"userId": user, "expiresAt": {"$gt": now}}, {"_id": 0, "connectionId": 1}
                ):
                    try:
                        api.post_to_connection(ConnectionId=doc["connectionId"], Data=frame)
                        posts += 1
                    except gone:
                        col.delete_one({"connectionId": doc["connectionId"]})
            return posts

        out: dict[str, Any] = {}
        try:
            await self.ask("reset")
            sent = publish_inline(self.users[:20])  # warm the clients up
            request_ms: dict[str, dict[str, float]] = {}
            for size in AUDIENCES:
                times = []
                for k in range(self.plan.inline_calls[size]):
                    users = self.audience(k, size)
                    t = time.perf_counter()
                    sent += publish_inline(users)
                    times.append((time.perf_counter() - t) * 1000)
                request_ms[str(size)] = summary(times)
            out["request_ms"] = request_ms
            calls = max(1, self.plan.inline_posts // 20)
            cpu0, t0 = time.process_time(), time.perf_counter()
            posts = sum(publish_inline(self.audience(k, 20)) for k in range(calls))
            cpu1, t1 = time.process_time(), time.perf_counter()
            sent += posts
            out["posts_per_s"] = round(posts / (t1 - t0), 1)
            out["cpu_us_per_post"] = round((cpu1 - cpu0) / max(1, posts) * 1e6, 1)
            stats = await self.ask("wait", expected=sent, timeout_s=60)
            self.check("inline", sent, stats["total"])
        finally:
            api.close()
            mongo.close()
        return out

    async def _drive(
        self, post: Callable[[str, bytes], Awaitable[None]], targets: list[str]
    ) -> dict[str, Any]:
        """``baseline_posts`` posts at fan-out 20 with ``CONCURRENCY`` in flight; CPU of this process."""
        events = max(1, self.plan.baseline_posts // len(targets))
        work = deque((cid, frame) for frame in self.frames(events) for cid in targets)
        total = len(work)
        await self.ask("reset")

        async def lane() -> None:
            while work:
                cid, frame = work.popleft()
                await post(cid, frame)

        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
        cpu1, t1 = time.process_time(), time.perf_counter()
        stats = await self.ask("wait", expected=total, timeout_s=60)
        return {
            "posts": total,
            "received": stats["total"],
            "posts_per_s": round(total / (t1 - t0), 1),
            "cpu_us_per_post": round((cpu1 - cpu0) / total * 1e6, 1),
        }

    async def aiobotocore_baseline(self, targets: list[str]) -> dict[str, Any]:
        """(b) ``post_to_connection`` through aiobotocore, ``CONCURRENCY`` in flight."""
        config = AioConfig(max_pool_connections=CONCURRENCY, retries={"max_attempts": 1})
        async with get_session().create_client(
            "apigatewaymanagementapi",
            endpoint_url=self.api_url,
            region_name=self.settings.region,
            config=config,
            **DUMMY_KEYS,
        ) as api:

            async def post(cid: str, frame: bytes) -> None:
                await api.post_to_connection(ConnectionId=cid, Data=frame)

            await post(targets[0], self.frames(1)[0])
            out = await self._drive(post, targets)
        self.check("aiobotocore", out["posts"], out["received"])
        return out

    async def floor_baseline(self, targets: list[str]) -> dict[str, Any]:
        """(c) the same POST, unsigned (a static Authorization header), through bare aiohttp."""
        headers = {"Authorization": STATIC_AUTH, "Content-Type": "application/octet-stream"}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(cid: str, frame: bytes) -> None:
                async with http.post(f"{self.api_url}/@connections/{cid}", data=frame, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"floor post answered {r.status}")

            await post(targets[0], self.frames(1)[0])
            out = await self._drive(post, targets)
        self.check("floor", out["posts"], out["received"])
        return out

    async def client_floor_baseline(self, targets: list[str]) -> dict[str, Any]:
        """(c') the floor's unsigned POST through the worker's own HTTP client, ``fanout.gateway.http``."""
        url = urlsplit(self.api_url)
        http = HttpClient(timeout_s=30)
        origin = http.origin(url.scheme, url.hostname or "", url.port)
        headers = [("Authorization", STATIC_AUTH), ("Content-Type", "application/octet-stream")]

        async def post(cid: str, body: bytes) -> None:
            path = f"{url.path}/@connections/{cid}"
            status, _ = await origin.request(frame_request("POST", url.netloc, path, headers, body))
            if status != 200:
                raise RuntimeError(f"client floor post answered {status}")

        try:
            await post(targets[0], self.frames(1)[0])
            out = await self._drive(post, targets)
        finally:
            await http.close()
        self.check("client_floor", out["posts"], out["received"])
        return out

    # ---- pool curve

    async def restart_worker(self, processes: int) -> bool:
        """Replace the stack's worker with ``fanout worker --processes N``; False if that fails."""
        assert self.stack is not None
        part = self.stack.worker
        assert part is not None
        assert part.process is not None
        part.process.terminate()
        await asyncio.to_thread(part.process.wait, 30)
        argv = [sys.executable, "-m", "fanout", "worker", "--processes", str(processes)]
        part.process = subprocess.Popen(argv, env=self.stack.env, start_new_session=True)  # noqa: ASYNC220
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(part.ready):
            if part.process.poll() is not None or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    # ---- everything

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        r = self.results
        r["machine"] = machine()
        r["mode"] = plan.mode
        self.echo(f"connecting {len(self.users)} WebSocket clients")
        opened = await self.ask("connect", users=self.users)
        r["connections"] = opened
        targets20 = self.connection_ids(self.users[:20])
        session = get_session()
        async with session.create_client("sqs", **self.settings.aws_client_kwargs()) as sqs:
            url = (await sqs.get_queue_url(QueueName=self.settings.queue_name))["QueueUrl"]
            await self.throughput(sqs, url, 20, 200)  # warm-up
            by_fanout: dict[str, Any] = {}
            for fanout, posts in plan.throughput_posts.items():
                self.echo(f"throughput at fan-out {fanout} ({posts} posts)")
                by_fanout[str(fanout)] = await self.throughput(sqs, url, fanout, posts)
            r["throughput"] = by_fanout
            r["posts_per_s"] = by_fanout["20"]["posts_per_s"]
            r["worker_cpu_us_per_post"] = by_fanout["20"]["worker_cpu_us_per_post"]
            latency: dict[str, Any] = {}
            for fanout in (1, 20):
                offered = by_fanout[str(fanout)]["posts_per_s"] / 2
                self.echo(f"latency at fan-out {fanout}, {offered:.0f} posts/s for {plan.latency_s:.0f}s")
                latency[str(fanout)] = await self.steady(sqs, url, fanout, offered, plan.latency_s, None)
            r["latency_by_fanout"] = latency
            r["latency_ms"] = {k: latency["20"][k] for k in ("p50", "p95", "p99")}
            if plan.soak_s:
                offered = by_fanout["20"]["posts_per_s"] / 2
                self.echo(f"soak at fan-out 20, {offered:.0f} posts/s for {plan.soak_s:.0f}s (worker RSS)")
                samples: list[tuple[float, float]] = []
                t0 = time.monotonic()

                def sample() -> None:
                    samples.append((round(time.monotonic() - t0, 1), round(max(rss_mb(self.worker_pid)), 1)))

                soak = await self.steady(sqs, url, 20, offered, plan.soak_s, sample)
                sample()
                half = min(samples, key=lambda x: abs(x[0] - plan.soak_s / 2))[1]
                r["soak"] = {
                    "seconds": plan.soak_s,
                    "latency_ms": soak,
                    "rss_mb_samples": samples,
                    "rss_growth_mb_second_half": round(samples[-1][1] - half, 1),
                }
        self.echo("request-path publish time")
        r["publish_ms"] = self.publish_times()
        self.echo("baseline (a): inline boto3 posts")
        inline = await self.inline()
        r["inline"] = inline
        r["inline_publish_ms"] = inline["request_ms"]
        r["inline_cpu_us_per_post"] = inline["cpu_us_per_post"]
        self.echo("baseline (b): aiobotocore")
        r["aiobotocore"] = await self.aiobotocore_baseline(targets20)
        r["aiobotocore_cpu_us_per_post"] = r["aiobotocore"]["cpu_us_per_post"]
        self.echo("baseline (c): the floor, bare aiohttp")
        r["floor"] = await self.floor_baseline(targets20)
        r["floor_cpu_us_per_post"] = r["floor"]["cpu_us_per_post"]
        self.echo("baseline (c'): the floor through the worker's own HTTP client")
        r["client_floor"] = await self.client_floor_baseline(targets20)
        r["client_floor_cpu_us_per_post"] = r["client_floor"]["cpu_us_per_post"]
        # Not a target: how much of the worker's CPU lies outside its own HTTP requests.
        client_floor = r["client_floor_cpu_us_per_post"]
        r["worker_over_client_floor"] = round(r["worker_cpu_us_per_post"] / client_floor, 2)
        per_process = rss_mb(self.worker_pid)
        r["rss_mb"] = round(max(per_process), 1)
        r["rss_mb_per_process"] = [round(x, 1) for x in per_process]
        if plan.pool:
            r["pool"] = await self.pool_curve()
        r["received_all"] = all(c["received"] >= c["expected"] for c in r["checks"].values())
        r["targets"] = targets(r)
        return r

    async def pool_curve(self) -> dict[str, Any]:
        curve: dict[str, Any] = {}
        async with get_session().create_client("sqs", **self.settings.aws_client_kwargs()) as sqs:
            url = (await sqs.get_queue_url(QueueName=self.settings.queue_name))["QueueUrl"]
            for n in self.plan.pool:
                self.echo(f"pool: fanout worker --processes {n}")
                if not await self.restart_worker(n):
                    curve[str(n)] = {"error": "worker did not become ready"}
                    break
                await self.throughput(sqs, url, 20, 200)
                res = await self.throughput(sqs, url, 20, self.plan.throughput_posts[20])
                res["worker_processes_seen"] = len(process_tree(self.worker_pid))
                curve[str(n)] = res
        return curve


def targets(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with its figure and whether it is met."""
    worker = r["worker_cpu_us_per_post"]
    pub = r["publish_ms"]
    out = {
        "worker_over_floor": {"value": round(worker / r["floor_cpu_us_per_post"], 2), "target": "<= 1.3"},
        "aiobotocore_over_worker": {
            "value": round(r["aiobotocore_cpu_us_per_post"] / worker, 2),
            "target": ">= 3",
        },
        "inline_over_worker": {"value": round(r["inline_cpu_us_per_post"] / worker, 2), "target": ">= 4"},
        "publish_p99_max_ms": {"value": max(v["p99"] for v in pub.values()), "target": "<= 10"},
        "publish_p99_1000_over_1": {
            "value": round(pub["1000"]["p99"] / pub["1"]["p99"], 2),
            "target": "<= 1.5",
        },
        "latency_p95_ms_fanout_20": {"value": r["latency_ms"]["p95"], "target": "<= 50"},
        "rss_mb_per_process": {"value": r["rss_mb"], "target": "<= 150"},
    }
    if "soak" in r:  # "no upward trend": flat over the soak's second half
        out["rss_growth_mb_second_half"] = {"value": r["soak"]["rss_growth_mb_second_half"], "target": "<= 2"}
    for item in out.values():
        op, limit = item["target"].split()
        item["met"] = item["value"] <= float(limit) if op == "<=" else item["value"] >= float(limit)
    return out


CLIENT_FLOOR = "(c') floor: fanout's HTTP client"


def table(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"fanout bench ({r['mode']}) on {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}",
        f"{r['connections']} WebSocket clients on the emulator, {FRAME_BYTES} B frames",
        "",
        "Worker throughput and CPU (CPU from /proc of the worker processes)",
        f"  {'fan-out':>8} {'posts/s':>10} {'CPU us/post':>12} {'posts':>8}",
    ]
    for fanout, t in r["throughput"].items():
        lines.append(
            f"  {fanout:>8} {t['posts_per_s']:>10.0f} {t['worker_cpu_us_per_post']:>12.1f} {t['posts']:>8}"
        )
    lines += [
        "",
        "CPU per delivered post at fan-out 20, worker beside the baselines",
        f"  {'':<34} {'CPU us/post':>12} {'posts/s':>10}",
        f"  {'worker (fanout worker)':<34} {r['worker_cpu_us_per_post']:>12.1f} {r['posts_per_s']:>10.0f}",
        f"  {'(c) floor: unsigned aiohttp POST':<34} {r['floor']['cpu_us_per_post']:>12.1f} "
        f"{r['floor']['posts_per_s']:>10.0f}",
        f"  {CLIENT_FLOOR:<34} {r['client_floor']['cpu_us_per_post']:>12.1f} "
        f"{r['client_floor']['posts_per_s']:>10.0f}",
        f"  {'(b) aiobotocore post_to_connection':<34} {r['aiobotocore']['cpu_us_per_post']:>12.1f} "
        f"{r['aiobotocore']['posts_per_s']:>10.0f}",
        f"  {'(a) inline: pymongo + boto3, serial':<34} {r['inline']['cpu_us_per_post']:>12.1f} "
        f"{r['inline']['posts_per_s']:>10.0f}",
        f"  worker / (c') = {r['worker_over_client_floor']}: the worker's CPU beyond its HTTP requests",
        "",
        "Request-path time of one publish call, ms",
        f"  {'audience':>8} {'Publisher p50':>14} {'p99':>8} {'inline p50':>12} {'p99':>9}",
    ]
    for size, p in r["publish_ms"].items():
        i = r["inline_publish_ms"][size]
        lines.append(f"  {size:>8} {p['p50']:>14.2f} {p['p99']:>8.2f} {i['p50']:>12.1f} {i['p99']:>9.1f}")
    lines += [
        "",
        "Publish-to-received latency seen by the clients, ms (half the measured maximum load)",
        f"  {'fan-out':>8} {'offered posts/s':>16} {'p50':>8} {'p95':>8} {'p99':>8}",
    ]
    for fanout, lat in r["latency_by_fanout"].items():
        lines.append(
            f"  {fanout:>8} {lat['offered_posts_per_s']:>16.0f} "
            f"{lat['p50']:>8.1f} {lat['p95']:>8.1f} {lat['p99']:>8.1f}"
        )
    lines += ["", f"Worker RSS at the end: {r['rss_mb_per_process']} MB"]
    if "soak" in r:
        s = r["soak"]["rss_mb_samples"]
        lines.append(
            f"  during a {r['soak']['seconds']:.0f}s soak: {s[0][1]} -> {s[-1][1]} MB "
            f"(max {max(x[1] for x in s)})"
        )
    if "pool" in r:
        lines += [
            "",
            f"Pool curve at fan-out 20 ({r['machine']['cores']} cores; 'others': cores busy with the rest)",
            f"  {'processes':>9} {'posts/s':>10} {'CPU us/post':>12} {'worker cores':>13} {'others':>7}",
        ]
        for n, t in r["pool"].items():
            if "error" in t:
                lines.append(f"  {n:>9} {t['error']}")
            else:
                lines.append(
                    f"  {n:>9} {t['posts_per_s']:>10.0f} {t['worker_cpu_us_per_post']:>12.1f} "
                    f"{t['worker_cpu_share']:>13.2f} {t['others_cpu_share']:>7.2f}"
                )
    lines += ["", "Targets", f"  {'':<28} {'value':>8} {'target':>8}  met"]
    for name, t in r["targets"].items():
        lines.append(f"  {name:<28} {t['value']:>8} {t['target']:>8}  {'yes' if t['met'] else 'NO'}")
    lines.append(f"\nevery frame arrived: {'yes' if r['received_all'] else 'NO'}")
    return "\n".join(lines)


def run(
    quick: bool, json_path: Path, soak_s: float | None = None, echo: Callable[[str], None] | None = None
) -> int:
    """Run the benchmark, print the table, write the JSON; exit code 1 if frames went missing."""

    def say(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    plan = QUICK if quick else FULL
    if soak_s is not None:
        plan = Plan(**{**plan.__dict__, "soak_s": soak_s})
    bench = Bench(plan, echo or say)
    started = time.monotonic()
    try:
        bench.start()
        results = asyncio.run(bench.run())
    finally:
        bench.stop()
    results["seconds"] = round(time.monotonic() - started, 1)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nJSON: {json_path} ({results['seconds']:.0f}s)")
    return 0 if results["received_all"] else 1
