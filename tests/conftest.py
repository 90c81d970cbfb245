"""Session fixtures: a real local stack (moto server, SecantusDB, the gateway emulator, a worker) on
free ports, started through `fanout dev` exactly as a developer would, and isolated from any AWS account."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fanout.config import Settings
from fanout.lifeline import die_with_parent
from fanout.local.stack import moto_argv, wait_stopped

STARTUP_TIMEOUT_S = 120


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this process: the kernel may give a just-closed
    port again, and one stack's moto and gateway once got the same one (the gateway could not bind)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses every connection for the whole test: bound and never listening, so no server
    can take it meanwhile, as one of another test process could a port ``free_port`` found free (then the
    posts meant to be refused met a server that never answered HTTP, and each waited out its timeout)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _unpinned_endpoints() -> Iterator[None]:
    """A production entry point run in a test pins botocore's endpoints for the whole process
    (``config.pin_aws_endpoints``): undone after each test, so the next one starts as a fresh process."""
    yield
    os.environ.pop("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", None)


@pytest.fixture(scope="session", autouse=True)
def _isolate_aws() -> Iterator[None]:
    """No test can reach a real AWS account: dummy credentials, no config files, no profile."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("AWS_", "FANOUT_")):
            del os.environ[key]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@dataclass
class Stack:
    """A running local stack and the settings that reach it."""

    settings: Settings
    env: dict[str, str]
    process: subprocess.Popen[str]
    log: Path

    @property
    def ws_url(self) -> str:
        s = self.settings
        return f"ws://{s.gateway_host}:{s.gateway_port}/{s.gateway_stage}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.gateway_port}"

    @property
    def demo_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.settings.demo_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}"


def stack_env(**overrides: str) -> dict[str, str]:
    """FANOUT_* variables for a stack on free ports with random queue names."""
    suffix = secrets.token_hex(4)
    env = {
        "FANOUT_ENV": "dev",
        "FANOUT_AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "FANOUT_QUEUE_NAME": f"fanout-events-{suffix}",
        "FANOUT_DLQ_NAME": f"fanout-events-dlq-{suffix}",
        "FANOUT_BULK_QUEUE_NAME": f"fanout-events-bulk-{suffix}",
        "FANOUT_TOPIC_NAME": f"fanout-events-{suffix}",
        "FANOUT_INBOUND_QUEUE_NAME": f"fanout-inbound-{suffix}",
        "FANOUT_GATEWAY_PORT": str(free_port()),
        "FANOUT_METRICS_PORT": str(free_port()),
        "FANOUT_DEMO_PORT": str(free_port()),
        "FANOUT_MONGO_URI": f"mongodb://127.0.0.1:{free_port()}",
        "FANOUT_MONGO_DB": f"fanout_{suffix}",
        "FANOUT_RECEIVE_WAIT_S": "1",
        "FANOUT_POST_TIMEOUT_S": "2",
        "FANOUT_LOG_FORMAT": "json",
        "FANOUT_LOG_LEVEL": "DEBUG",  # every event's own line: the tests read them, and check they leak nothing
    }
    env |= overrides
    return env


def start_stack(tmp: Path, env: dict[str, str], *args: str, demo: bool = False) -> Stack:
    """Run `fanout dev [ARGS]` with ``env`` and wait for its ready line; the demo page only when asked."""
    full_env = {**os.environ, **env}
    log = tmp / "stack.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "fanout", "dev", *args, *(() if demo else ("--no-demo",))],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,  # a killed test run leaves no stack behind
        )
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "fanout dev: ready" in line:
            settings = Settings(
                **{k[len("FANOUT_") :].lower(): v for k, v in env.items() if k.startswith("FANOUT_")}
            )
            return Stack(settings, env, process, log)
    process.kill()
    raise RuntimeError(f"local stack did not start: {''.join(lines)}\n{log.read_text()[-3000:]}")


def stop_stack(stack: Stack) -> None:
    """Stop the stack and wait until it has (SIGKILL to its group after 30 s)."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()
    if stack.process.stdout:
        stack.process.stdout.close()


_STOPPING: list[Stack] = []


def stop_stack_later(stack: Stack) -> None:
    """Signal the stack to stop and go on: it stops while the next tests run (or beside the session's
    other stacks at its end), and ``_stacks_stopped`` waits for it last."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
    _STOPPING.append(stack)


@pytest.fixture(scope="session", autouse=True)
def _stacks_stopped() -> Iterator[None]:
    """Set up first, so torn down last: every stack stopped with ``stop_stack_later`` has stopped."""
    yield
    while _STOPPING:
        stop_stack(_STOPPING.pop())


def _serve(argv: list[str], ready: Callable[[], bool], log: Path) -> subprocess.Popen[bytes]:
    """Start one server process and wait until it answers."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{argv[2]} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def _tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], wake: Callable[[], object] | None = None) -> None:
    process.terminate()
    try:
        wait_stopped(process, 10, wake)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Server:
    """One server started alone for the tests that need only it."""

    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SecantusDB alone, for tests that need only MongoDB."""
    port = free_port()
    log = tmp_path_factory.mktemp("mongo") / "secantus.log"
    argv = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", ":memory:", "--log-level", "WARNING"]  # fmt: skip
    process = _serve(argv, lambda: _tcp_answers(port), log)
    yield Server(f"mongodb://127.0.0.1:{port}", process)
    _stop(process, wake=lambda: _tcp_answers(port))


@pytest.fixture(scope="session")
def mongo_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """SecantusDB alone over TLS, its certificate from a test CA: production settings refuse a plain
    MongoDB URI, so the tests that run handlers as deployed reach this one."""
    import trustme  # here: only the production-mode tests need it

    certs = tmp_path_factory.mktemp("mongo-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    cert.private_key_pem.write_to_path(str(certs / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(certs / "cert.pem"))
    port = free_port()
    argv = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port),
            "--storage-path", ":memory:", "--log-level", "ERROR",
            "--tls-cert-file", str(certs / "cert.pem"), "--tls-key-file", str(certs / "key.pem")]  # fmt: skip
    process = _serve(argv, lambda: _tcp_answers(port), certs / "secantus.log")
    yield Server(f"mongodb://127.0.0.1:{port}/?tls=true&tlsCAFile={certs / 'ca.pem'}", process)
    _stop(process, wake=lambda: _tcp_answers(port))


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Server]:
    """moto (SQS, SNS, Secrets Manager) alone, for tests that need only AWS APIs."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    process = _serve(moto_argv("127.0.0.1", port), lambda: _tcp_answers(port), log)
    yield Server(f"http://127.0.0.1:{port}", process)
    _stop(process)


def dev_settings(moto: Server | None = None, mongo: Server | None = None, **fields: Any) -> Settings:
    """Development settings reaching the given servers, with random queue and database names."""
    suffix = secrets.token_hex(4)
    values: dict[str, Any] = {
        "env": "dev",
        "queue_name": f"fanout-events-{suffix}",
        "dlq_name": f"fanout-events-dlq-{suffix}",
        "bulk_queue_name": f"fanout-events-bulk-{suffix}",
        "topic_name": f"fanout-events-{suffix}",
        "inbound_queue_name": f"fanout-inbound-{suffix}",
        "mongo_db": f"fanout_{suffix}",
    }
    if moto is not None:
        values["aws_endpoint_url"] = moto.url
    if mongo is not None:
        values["mongo_uri"] = mongo.url
    return Settings(**(values | fields))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """The shared local stack; tests keep apart by using their own user ids."""
    env = stack_env()
    running = start_stack(tmp_path_factory.mktemp("stack"), env)
    yield running
    stop_stack_later(running)
