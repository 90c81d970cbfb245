"""A stack without a worker, shared by the tests that run workers with settings of their own; one on a
MongoDB of its own, for the tests that stop or freeze it; and the TypeScript package built once per
session for the tests that drive it with Node."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from fanout.lifeline import die_with_parent
from fanout.local.queues import create_queues
from fanout.local.stack import wait_stopped
from tests.conftest import Stack, free_port, stack_env, start_stack, stop_stack, stop_stack_later
from tests.helpers import WorkerPool

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NO_FAULTS: dict[str, float | str] = {
    "throttle": 0,
    "error": 0,
    "timeout": 0,
    "drop": 0,
    "latency_ms": 0,
    "only": "",
}


class Mongo:
    """A SecantusDB process on disk, so it can be stopped and started again with its data."""

    def __init__(self, path: Path, port: int) -> None:
        self.path, self.port = path, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", str(self.path), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            wait_stopped(self.process, 30, wake=self.answers)

    def answers(self) -> bool:
        with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True
        return False

    def until_answering(self, timeout_s: float = 60) -> None:
        """Return once it accepts connections (or ``timeout_s`` has passed)."""
        deadline = time.monotonic() + timeout_s
        while not self.answers() and time.monotonic() < deadline:
            time.sleep(0.05)


@contextmanager
def stack_on_own_mongo(tmp: Path, **env: str) -> Iterator[tuple[Stack, Mongo]]:
    """A stack whose MongoDB is a SecantusDB process the test owns (to stop or freeze), with 1 s MongoDB
    deadlines and the FANOUT_* overrides ``env``; that MongoDB stops also when the stack did not start: no
    process outlives its test."""
    mongo = Mongo(tmp / "mongo", free_port())
    mongo.start()
    uri = f"mongodb://127.0.0.1:{mongo.port}"
    env = stack_env(FANOUT_MONGO_URI=uri, FANOUT_MONGO_TIMEOUT_MS="1000", **env)
    mongo.until_answering()  # `fanout dev` must find it answering, or it would start its own
    try:
        stack = start_stack(tmp, env)  # finds MongoDB answering, so starts no SecantusDB of its own
        yield stack, mongo
        stop_stack(stack)
    finally:
        mongo.stop()


@pytest.fixture(scope="session")
def own_mongo_stack(
    tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None
) -> Iterator[tuple[Stack, Mongo]]:
    """One stack on a MongoDB of its own for the tests that stop it (test_dependency_faults) or freeze it
    (test_dependency_hang), in one xdist group, so it starts once a run; each leaves it answering.
    Probe rounds every 0.5 s (2 s by default): /readyz follows MongoDB going and coming back sooner."""
    with stack_on_own_mongo(tmp_path_factory.mktemp("own-mongo"), FANOUT_PROBE_S="0.5") as owned:
        yield owned


@pytest.fixture(scope="session")
def bare_stack(tmp_path_factory: pytest.TempPathFactory, _isolate_aws: None) -> Iterator[Stack]:
    """moto, SecantusDB and the emulator, no worker: each test starts the worker it needs."""
    stack = start_stack(tmp_path_factory.mktemp("bare"), stack_env(FANOUT_POST_TIMEOUT_S="10"), "--no-worker")
    yield stack
    stop_stack_later(stack)


def faults(stack: Stack, **values: float | str) -> dict[str, Any]:
    """Set the emulator's injected faults (``PUT /_emulator/faults``)."""
    url = f"{stack.gateway_url}/_emulator/faults"
    request = urllib.request.Request(url, json.dumps(values).encode(), method="PUT")  # noqa: S310 - local
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - the local emulator
        return dict(json.loads(answer.read()))


def stats(stack: Stack) -> dict[str, int]:
    """The emulator's counts of management-API answers (``delivered``, ``gone``, ``forbidden`` ...)."""
    with urllib.request.urlopen(f"{stack.gateway_url}/_emulator/stats", timeout=5) as answer:  # noqa: S310
        return dict(json.loads(answer.read())["counts"])


@dataclass
class Lane:
    """One test's share of the bare stack: queues of its own, and the workers it started on them."""

    stack: Stack  # the bare stack's servers, with this lane's queue names
    tmp: Path
    started: list[WorkerPool] = field(default_factory=list)

    def worker(self, **env: str) -> WorkerPool:
        """Start `fanout worker --processes 1` on this lane's queues with FANOUT_* overrides."""
        pool = WorkerPool(self.stack, self.tmp / f"worker-{len(self.started)}.log", processes=1, **env)
        pool.start()
        self.started.append(pool)
        return pool


@pytest.fixture
def lane(bare_stack: Stack, tmp_path: Path) -> Iterator[Lane]:
    """Fresh queues on the bare stack (nothing a previous test left can reach this one), no faults;
    every worker started is killed at the end."""
    suffix = secrets.token_hex(4)
    names = {"queue_name": f"fanout-events-{suffix}", "dlq_name": f"fanout-events-dlq-{suffix}",
             "topic_name": f"fanout-events-{suffix}", "bulk_queue_name": f"fanout-events-bulk-{suffix}"}  # fmt: skip
    settings = bare_stack.settings.model_copy(update=names)
    create_queues(settings)
    env = {**bare_stack.env, **{f"FANOUT_{k.upper()}": v for k, v in names.items()}}
    faults(bare_stack, **NO_FAULTS)
    running = Lane(replace(bare_stack, settings=settings, env=env), tmp_path)
    yield running
    for pool in running.started:
        pool.kill()
    faults(bare_stack, **NO_FAULTS)


def _installed() -> bool:
    """node_modules holds what package-lock.json pins, by npm's own record of the tree it installed
    (node_modules/.package-lock.json): `npm ci` would reinstall the same files, which takes seconds."""
    hidden = PACKAGE / "node_modules" / ".package-lock.json"
    if not hidden.is_file():
        return False
    locked = json.loads((PACKAGE / "package-lock.json").read_text())["packages"]
    return {k: v for k, v in locked.items() if k} == json.loads(hidden.read_text()).get("packages")


@pytest.fixture(scope="session")
def built_package() -> list[str]:
    """`npm ci` and `tsc` as a developer runs them; returns the compiled Node test files."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), (
            f"{tool} is required to test clients/typescript (install Node.js 20 or later)"
        )
    # `make test` runs a test process per core, and `npm ci` deletes node_modules first: the first
    # process of a run builds, under a lock, and the others use its build.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    stamp = PACKAGE / "dist-test" / ".built-by"
    with (PACKAGE / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != run:
            install = [] if _installed() else [["npm", "ci", "--no-audit", "--no-fund"]]
            for args in (*install, ["npm", "run", "build:test"]):
                result = subprocess.run(
                    args, cwd=PACKAGE, capture_output=True, text=True, timeout=240, check=False
                )
                assert 0 == result.returncode, (
                    f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )
            stamp.write_text(run)
    files = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "dist-test" / "test").glob("*.test.js"))
    assert files, "tsc wrote no test files to dist-test/test/"
    return files
