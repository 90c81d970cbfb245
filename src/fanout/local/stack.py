"""The embedded local stack behind ``fanout dev``: moto (SQS+SNS), SecantusDB, the emulator, a worker.

Each part runs as its own process, started as soon as what it needs answers: moto and SecantusDB at
once, the gateway once MongoDB answers, the demo page and the worker once the queues exist too. The stack
waits until each answers, and stops them all on exit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from fanout.config import Settings
from fanout.errors import ConfigError
from fanout.lifeline import die_with_parent
from fanout.local.queues import create_queues


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - local http only
            return bool(response.status < 500)
    except OSError:
        return False


def _tcp_ok(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def moto_argv(host: str, port: int) -> list[str]:
    """The command serving the stack's moto: its script by path, ``-P`` keeping the script's folder off
    ``sys.path``. It needs moto alone; ``-m`` would import the fanout package first, 0.6 s more to start."""
    return [sys.executable, "-P", str(Path(__file__).with_name("motoserver.py")), "-H", host, "-p", str(port)]


def wait_stopped(
    process: subprocess.Popen[bytes], timeout_s: float, wake: Callable[[], object] | None = None
) -> None:
    """Wait until ``process`` has exited (``TimeoutExpired`` after ``timeout_s``), calling ``wake`` every
    0.1 s meanwhile. A stopping SecantusDB 0.7 waits 2 s for its accept thread, which closing the
    listening socket does not wake on Linux; a connection to its port does, at once."""
    deadline = time.monotonic() + timeout_s
    while wake is not None and time.monotonic() < deadline:
        try:
            process.wait(0.1)
            return
        except subprocess.TimeoutExpired:
            wake()
    process.wait(max(0.0, deadline - time.monotonic()))


@dataclass
class Part:
    """One child process of the stack: how to start it and how to tell it answers."""

    name: str
    slug: str  # its log file's name
    endpoint: str
    argv: list[str]
    ready: Callable[[], bool]
    needs: frozenset[str] = frozenset()  # slugs that must answer first; QUEUES: the queues exist
    quiet: bool = True  # send its output to a log file rather than the terminal
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)
    deadline: float = 0.0  # monotonic time by which it must answer
    wake: Callable[[], object] | None = None  # called while it stops, until it has (see wait_stopped)


#: A part's need for the queues (created on moto by the stack itself, between the parts).
QUEUES = "queues"
#: How often the stack asks its starting parts whether they answer.
POLL_S = 0.05


#: Settings the local stack uses unless the caller sets them. A stopping worker waits for its open long
#: poll (SQS would hide what it returns), so a short poll keeps Ctrl-C quick.
DEV_DEFAULTS = {"FANOUT_RECEIVE_WAIT_S": "5"}


class LocalStack:
    """Starts and stops the local stack described by a ``Settings`` (dev defaults).

    Its parts are attributes: ``moto``, ``mongo`` (None when an existing MongoDB is used), ``gateway``,
    ``demo`` (the demo page; None unless ``demo=True``, as ``fanout dev`` asks) and ``worker`` (None with
    ``worker=False``); ``parts`` lists those started, in order.
    """

    def __init__(
        self,
        settings: Settings,
        log_dir: Path | None = None,
        echo: Callable[[str], None] = print,
        *,
        worker: bool = True,
        demo: bool = False,
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="fanout-dev-"))
        self.echo = echo
        self.parts: list[Part] = []
        self.env = {**DEV_DEFAULTS, **os.environ, "FANOUT_ENV": "dev"}
        s = settings
        py = sys.executable
        aws = urlsplit(s.sqs_endpoint() or "")
        self.moto = Part(
            "SQS+SNS (moto)",
            "moto",
            f"{aws.scheme}://{aws.netloc}",
            moto_argv(aws.hostname or "127.0.0.1", aws.port or 0),
            lambda: _http_ok(f"{aws.scheme}://{aws.netloc}/moto-api/"),
        )
        self.mongo: Part | None = None
        if self.embedded_mongo():
            mongo = urlsplit(s.mongo())
            host, port = mongo.hostname or "127.0.0.1", mongo.port or 27017
            self.mongo = Part(
                "MongoDB (SecantusDB)",
                "mongodb",
                s.mongo(),
                [py, "-m", "secantus", "--host", host, "--port", str(port), "--storage-path", ":memory:",
                 "--log-level", "WARNING"],
                lambda: _tcp_ok(host, port),
                wake=lambda: _tcp_ok(host, port),
            )  # fmt: skip
        gw = f"{s.gateway_host}:{s.gateway_port}"
        self.gateway = Part(
            "API Gateway (emulator)",
            "gateway",
            f"ws://{gw}/{s.gateway_stage}  management http://{gw}/{s.gateway_stage}/@connections/{{id}}",
            [py, "-m", "fanout", "gateway"],
            lambda: _http_ok(f"http://{gw}/_emulator/stats"),
            needs=frozenset({"mongodb"}),  # it creates its indexes as it starts
            quiet=False,
        )
        self.demo: Part | None = None
        if demo:
            page = f"http://{s.gateway_host}:{s.demo_port}"
            self.demo = Part(
                "demo page",
                "demo",
                f"{page}/?user=alice  (and ?user=bob in another tab)",
                [py, "-m", "fanout.local.demo"],
                lambda: _http_ok(f"{page}/api/config"),
                needs=frozenset({"mongodb", QUEUES}),  # it seeds its conversation, resolves the queue
                quiet=False,
            )
        self.worker: Part | None = None
        if worker:
            metrics = f"http://{s.metrics_host}:{s.metrics_port}"
            self.worker = Part(
                "worker",
                "worker",
                f"{metrics}/metrics  {metrics}/healthz  {metrics}/readyz",
                [py, "-m", "fanout", "worker", "--processes", "1"],
                lambda: _http_ok(f"{metrics}/readyz"),
                needs=frozenset({"mongodb", QUEUES}),  # it would retry, with a warning, until both answer
                quiet=False,
            )

    def embedded_mongo(self) -> bool:
        """Start SecantusDB unless FANOUT_MONGO_URI names a MongoDB that already answers (or a remote one)."""
        if self.settings.mongo_uri is None:
            return True
        uri = urlsplit(self.settings.mongo())
        host = uri.hostname or ""
        local = (
            host in ("127.0.0.1", "localhost", "::1") and "," not in uri.netloc and uri.scheme == "mongodb"
        )
        return local and not _tcp_ok(host, uri.port or 27017)

    def check_ports(self) -> None:
        """Fail with a clear message when a port the stack needs is taken."""
        s = self.settings
        aws = urlsplit(s.sqs_endpoint() or "")
        wanted = [("SQS/SNS (FANOUT_AWS_ENDPOINT_URL)", aws.hostname or "127.0.0.1", aws.port or 0)]
        if self.embedded_mongo():
            mongo = urlsplit(s.mongo())
            wanted.append(("MongoDB (FANOUT_MONGO_URI)", mongo.hostname or "127.0.0.1", mongo.port or 0))
        wanted.append(("gateway (FANOUT_GATEWAY_PORT)", s.gateway_host, s.gateway_port))
        wanted.append(("worker metrics (FANOUT_METRICS_PORT)", s.metrics_host, s.metrics_port))
        if self.demo is not None:
            wanted.append(("demo page (FANOUT_DEMO_PORT)", s.gateway_host, s.demo_port))
        for what, host, port in wanted:
            if not _port_free(host, port):
                raise ConfigError(
                    f"port {port} on {host} for {what} is already in use; is another `fanout dev` running? "
                    "Stop it or choose another port with the variable named."
                )

    def start(self, timeout_s: float = 60) -> None:
        """Start every part as soon as the parts it needs answer, and the queues once moto answers; wait
        until each answers (within ``timeout_s`` of its start) and echo their lines in a fixed order."""
        self.check_ports()
        order = [p for p in (self.moto, self.mongo, self.gateway, self.demo, self.worker) if p is not None]
        answered = set() if self.mongo else {"mongodb"}  # an existing MongoDB answers already
        waiting, starting, shown = list(order), [], 0
        while shown < len(order):
            for part in [p for p in waiting if p.needs <= answered]:
                waiting.remove(part)
                self._spawn(part, timeout_s)
                starting.append(part)
            for part in [p for p in starting if self._answers(p, timeout_s)]:
                starting.remove(part)
                answered.add(part.slug)
            if "moto" in answered and QUEUES not in answered:
                self.create_queues()
                answered.add(QUEUES)
                continue  # start what waited for them at once
            while shown < len(order) and order[shown].slug in answered:
                self.echo(f"  {order[shown].name:<24} {order[shown].endpoint}")
                shown += 1
            if shown < len(order):
                time.sleep(POLL_S)

    def _spawn(self, part: Part, timeout_s: float) -> None:
        if part.quiet:
            part.log = open(self.log_dir / f"{part.slug}.log", "wb")  # noqa: SIM115 - closed in stop()
        part.process = subprocess.Popen(
            part.argv,
            env=self.env,
            stdout=part.log or sys.stderr,
            stderr=subprocess.STDOUT if part.log else None,
            start_new_session=True,
            preexec_fn=die_with_parent,  # fanout dev is single-threaded when it starts children
        )
        self.parts.append(part)
        part.deadline = time.monotonic() + timeout_s

    def _answers(self, part: Part, timeout_s: float) -> bool:
        """Whether ``part`` answers; a clear error when it exited or its time is up."""
        if part.ready():
            return True
        assert part.process is not None
        if part.process.poll() is not None:
            raise ConfigError(f"{part.name} exited with {part.process.returncode}; see {self.log_dir}")
        if time.monotonic() > part.deadline:
            raise ConfigError(f"{part.name} did not answer within {timeout_s:.0f}s; see {self.log_dir}")
        return False

    def create_queues(self) -> dict[str, str]:
        """Create the queue, its DLQ and the topic subscribed to the queue; idempotent."""
        return create_queues(self.settings)

    def stop(self, timeout_s: float = 15) -> None:
        """Stop every child (reverse order): SIGTERM, then SIGKILL after ``timeout_s``. The worker goes
        first, alone, so its open long poll and its releases still reach a live SQS; then the gateway and
        the demo page, so the ``$disconnect`` of the gateway's open sockets still reaches a live MongoDB
        and their MongoDB clients end their sessions on close (against a MongoDB stopping beside them,
        that close waited out the whole timeout); then MongoDB and moto."""
        servers = [p for p in (self.mongo, self.moto) if p is not None]
        parts = list(reversed(self.parts))
        first = [p for p in parts if p is self.worker]
        clients = [p for p in parts if p is not self.worker and all(p is not s for s in servers)]
        for group in (first, clients, [p for p in parts if any(p is s for s in servers)]):
            for part in group:
                if part.process and part.process.poll() is None:
                    part.process.terminate()
            for part in group:
                if part.process:
                    try:
                        wait_stopped(part.process, timeout_s, part.wake)
                    except subprocess.TimeoutExpired:
                        part.process.kill()
                        part.process.wait()
                if part.log:
                    part.log.close()
        self.parts.clear()

    def failed(self) -> Part | None:
        """The first part that exited on its own, if any."""
        return next((p for p in self.parts if p.process and p.process.poll() is not None), None)
