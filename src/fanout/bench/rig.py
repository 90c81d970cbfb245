"""The bench's rig: a local stack on free ports, the WebSocket clients' process, and the shared workload.

Every phase and baseline works through one ``Rig``: the same users (one connection each), the same
1 KiB payload, the same audiences, and one tally of frames expected against frames received.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import secrets
import socket
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NotRequired, TypedDict

import boto3
from pymongo import MongoClient

from fanout.bench import sink
from fanout.bench.plan import EVENT_TYPE, FRAME_BYTES, Plan
from fanout.bench.results import Check
from fanout.config import Settings
from fanout.envelope import QueueBody
from fanout.local.stack import DEV_DEFAULTS, LocalStack
from fanout.publish import build_event


class SinkStats(TypedDict):
    """What the clients' process counted since its last reset (see ``sink.Sink.stats``)."""

    total: int
    last_at: float  # time.time() of the last frame
    open: int
    types: dict[str, int]  # frames by event type
    latencies_ms: NotRequired[list[float]]
    latencies_by_type: NotRequired[dict[str, list[float]]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def payload_for(size: int = FRAME_BYTES) -> dict[str, Any]:
    """A payload whose client frame is exactly ``size`` bytes."""
    probe = build_event(EVENT_TYPE, user_ids=["u"], payload={"notificationId": "n1", "body": ""})
    pad = size - len(probe.client_frame)
    return {"notificationId": "n1", "body": "x" * max(0, pad)}


class Rig:
    """Starts and stops the stack and the clients; holds the users, the payload and the checks."""

    def __init__(self, plan: Plan, echo: Callable[[str], None]) -> None:
        self.plan = plan
        self.echo = echo
        suffix = secrets.token_hex(4)
        self.env = {
            "FANOUT_ENV": "dev",
            "FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "FANOUT_QUEUE_NAME": f"bench-{suffix}",
            "FANOUT_DLQ_NAME": f"bench-{suffix}-dlq",
            "FANOUT_TOPIC_NAME": f"bench-{suffix}",
            "FANOUT_GATEWAY_PORT": str(free_port()),
            "FANOUT_METRICS_PORT": str(free_port()),
            "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}",
            "FANOUT_MONGO_DB": f"bench_{suffix}",
            # SecantusDB scans the whole collection for the last broadcast shard's query (its
            # ``bucket: {$exists: false}`` branch): about 7 s at 100,000 records, past the 5 s default.
            "FANOUT_MONGO_TIMEOUT_MS": "30000",
            # The sink's clients do not ping (1,000 pings every 30 s would be load on the stack measured),
            # and a full run lasts longer than a record's default 10 minutes without a frame.
            "FANOUT_CONNECTION_TTL_S": "7200",
            "FANOUT_LOG_LEVEL": "INFO",  # as deployed: the worker's log lines count against its CPU
            "FANOUT_LOG_FORMAT": "json",
            "FANOUT_RECEIVE_WAIT_S": str(plan.receive_wait_s),
        }
        fields: dict[str, Any] = {k[len("FANOUT_") :].lower(): v for k, v in self.env.items()}
        self.settings = Settings(**fields)
        self.pub_queue = f"bench-{suffix}-publish"  # request-path timing only; no worker reads it
        s = self.settings
        self.api_url = f"http://{s.gateway_host}:{s.gateway_port}/{s.gateway_stage}"
        self.ws_url = f"ws://{s.gateway_host}:{s.gateway_port}/{s.gateway_stage}"
        self.users = self.user_ids(plan.users)
        self.payload = payload_for()
        self.stack: LocalStack | None = None
        self.pipe: Connection | None = None
        self.sink_process: BaseProcess | None = None
        self.checks: dict[str, Check] = {}

    # ---- the stack and the clients' process

    def start(self) -> None:
        """Start the local stack, create the publish queue, start the clients' process."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 8192):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        self.stack = LocalStack(self.settings, echo=lambda line: self.echo(line))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        self.stack.env = {**DEV_DEFAULTS, **clean, **self.env, "AWS_EC2_METADATA_DISABLED": "true"}
        self.echo(f"starting the local stack (logs in {self.stack.log_dir})")
        self.stack.start()
        sqs: Any = boto3.client("sqs", **self.settings.aws_client_kwargs())
        sqs.create_queue(QueueName=self.pub_queue)
        sqs.close()
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.sink_process = ctx.Process(
            target=sink.main, args=(child, self.ws_url, self.settings.jwt_key()), daemon=True
        )
        self.sink_process.start()

    def stop(self) -> None:
        """Close the clients, then stop the stack; safe after a failed or partial start."""
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

    @property
    def worker_pid(self) -> int:
        assert self.stack is not None
        part = self.stack.worker
        if part is None or part.process is None:
            raise RuntimeError("no worker process")
        return part.process.pid

    # ---- the clients, over the pipe

    async def _ask(self, command: str, **args: Any) -> Any:
        assert self.pipe is not None
        self.pipe.send((command, args))
        while not self.pipe.poll():  # no executor thread: an interrupted run must not hang on it
            await asyncio.sleep(0.005)
        return self.pipe.recv()

    async def connect(self, users: list[str]) -> int:
        """Open one WebSocket connection per user; how many opened."""
        opened: int = await self._ask("connect", users=users)
        return opened

    async def reset(self) -> None:
        """Forget every frame counted so far."""
        await self._ask("reset")

    async def stats(self, by_type: bool = False) -> SinkStats:
        """Frames counted since the last reset, now; with ``by_type`` their latencies by event type."""
        stats: SinkStats = await self._ask("stats", by_type=by_type)
        return stats

    async def wait(self, expected: int, timeout_s: float, latencies: bool = False) -> SinkStats:
        """Wait until ``expected`` frames arrived or ``timeout_s`` passed; what was counted."""
        args = {"expected": expected, "timeout_s": timeout_s, "latencies": latencies}
        stats: SinkStats = await self._ask("wait", **args)
        return stats

    # ---- the workload

    @staticmethod
    def user_ids(n: int) -> list[str]:
        """The first ``n`` bench users' ids; the first ``plan.users`` of them have a connection each."""
        return [f"bu{i}" for i in range(n)]

    def audience(self, k: int, size: int) -> list[str]:
        """The ``k``-th audience of ``size`` users, rotating through all of them."""
        start = (k * size) % len(self.users)
        return [self.users[(start + j) % len(self.users)] for j in range(size)]

    def event(self, k: int, fanout: int) -> QueueBody:
        return build_event(EVENT_TYPE, user_ids=self.audience(k, fanout), payload=self.payload)

    def frames(self, events: int) -> list[bytes]:
        """Client frames of ``events`` distinct events, for the baselines that post them directly."""
        return [
            build_event(EVENT_TYPE, user_ids=["x"], payload=self.payload).client_frame for _ in range(events)
        ]

    def connection_ids(self, users: list[str]) -> list[str]:
        """The users' connection ids, read from the stack's MongoDB."""
        mongo: MongoClient[dict[str, Any]]
        with MongoClient(self.settings.mongo(), tz_aware=True) as mongo:
            col: Any = mongo[self.settings.mongo_db][self.settings.connections_collection]
            docs = col.find({"userId": {"$in": users}}, {"_id": 0, "connectionId": 1})
            return [d["connectionId"] for d in docs]

    def check(self, phase: str, expected: int, received: int) -> None:
        """Record a phase's frames; warn at once when some did not arrive."""
        self.checks[phase] = Check(expected, received)
        if received < expected:
            self.echo(f"  WARNING: {phase}: {received} of {expected} frames arrived")
