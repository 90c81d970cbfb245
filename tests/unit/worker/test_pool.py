"""The pool supervisor reports what only it can see."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pymongo import MongoClient

from fanout.bench.proc import process_tree
from fanout.config import Settings
from fanout.lifeline import die_with_parent
from fanout.local.queues import create_queues
from fanout.worker.pool import Pool
from tests.conftest import Server, dev_settings, free_port


def test_restarts_reach_cloudwatch_from_the_supervisor() -> None:
    """With EMF on, the supervisor prints ProcessRestarts as the change since its last line."""
    pool = Pool(Settings(cloudwatch_emf=True), processes=2)
    lines: list[str] = []
    emitter = pool._emf()
    emitter._write = lines.append
    pool.restarts = 3
    emitter.flush()
    pool.restarts = 4
    emitter.flush()
    values = [json.loads(line)["ProcessRestarts"] for line in lines]
    assert [3.0, 1.0] == values


def test_no_emf_by_default() -> None:
    """EMF is off unless FANOUT_CLOUDWATCH_EMF is set."""
    assert Pool(Settings(), processes=1)._emf() is None


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a local http URL
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _start_pool(settings: Settings, port: int, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """``fanout worker --processes 2`` on the servers of ``settings``, its metrics on ``port``."""
    assert settings.aws_endpoint_url is not None and settings.mongo_uri is not None
    env = {
        **os.environ,
        "FANOUT_ENV": "dev",
        "FANOUT_AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "FANOUT_MONGO_URI": settings.mongo_uri.get_secret_value(),
        "FANOUT_MONGO_DB": settings.mongo_db,
        "FANOUT_QUEUE_NAME": settings.queue_name,
        "FANOUT_DLQ_NAME": settings.dlq_name,
        "FANOUT_METRICS_PORT": str(port),
        "FANOUT_RECEIVE_WAIT_S": "1",
        **env,
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "fanout", "worker", "--processes", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )  # fmt: skip


def test_active_connections_are_sampled_by_one_process_of_the_pool(
    moto_server: Server, mongo_server: Server, tmp_path: Path
) -> None:
    """With two processes, /metrics (the pool's livesum) shows the real count of live records, not twice it."""
    settings = dev_settings(moto_server, mongo_server)
    create_queues(settings)
    now = datetime.now(UTC)
    mongo: MongoClient[dict[str, Any]] = MongoClient(mongo_server.url)
    mongo[settings.mongo_db].websocketconnections.insert_many(
        [{"connectionId": f"c{i}", "userId": "u", "expiresAt": now + timedelta(hours=1)} for i in range(7)]
    )
    port = free_port()
    pool = _start_pool(settings, port, tmp_path / "pool.log", FANOUT_CENSUS_INTERVAL_S="0.3")
    try:
        deadline = time.monotonic() + 60
        while _get(f"http://127.0.0.1:{port}/readyz")[0] != 200:  # both processes up and ready
            assert pool.poll() is None and time.monotonic() < deadline, (tmp_path / "pool.log").read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # several census intervals: a second sampler would have added its count by now
        readings = []
        for _ in range(3):
            families = {
                f.name: f for f in text_string_to_metric_families(_get(f"http://127.0.0.1:{port}/metrics")[1])
            }
            readings.append(
                (
                    families["fanout_active_connections"].samples[0].value,
                    families["fanout_processes"].samples[0].value,
                )
            )
            time.sleep(0.3)
        assert [(7.0, 2.0)] * 3 == readings
    finally:
        pool.terminate()
        pool.wait(30)
        mongo.drop_database(settings.mongo_db)
        mongo.close()


def test_only_the_first_worker_process_runs_the_relay() -> None:
    """With FANOUT_RELAY=true, one process of the pool relays the outbox; the others only consume."""
    pool = Pool(Settings(relay=True), 3)
    assert [True, False, False] == [pool.settings_for(slot).relay for slot in range(3)]
    assert not Pool(Settings(), 2).settings_for(0).relay


def _workers(pool: int) -> list[int]:
    """The pool's worker processes (not multiprocessing's resource tracker)."""
    found = []
    for pid in process_tree(pool)[1:]:
        with contextlib.suppress(OSError):
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return sorted(found)


def test_a_worker_process_whose_loop_is_wedged_is_killed_and_restarted(
    moto_server: Server, mongo_server: Server, tmp_path: Path
) -> None:
    """A pool child that stops ticking (SIGSTOP: a loop wedged for good) is killed once FANOUT_STALL_S has
    passed and started again, and the pool is ready with both processes; /healthz alone, which asks
    only whether a child lives, would have stayed green."""
    settings = dev_settings(moto_server, mongo_server)
    create_queues(settings)
    port = free_port()
    log_path = tmp_path / "pool.log"
    # Heartbeats every 0.5 s, mirrored to the supervisor every second: a beat is at most 1.5 s old, later
    # loaded; 3.5 s of silence is a stall (2 s of margin, as 5 s had over the default 2 s probe).
    pool = _start_pool(settings, port, log_path, FANOUT_STALL_S="3.5", FANOUT_PROBE_S="0.5")

    def until(what: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not what():
            assert pool.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

    try:
        until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60)
        first = _workers(pool.pid)
        assert 2 == len(first)
        os.kill(first[1], signal.SIGSTOP)
        until(lambda: "worker_process_stalled" in log_path.read_text(), 15)
        until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60)
        now = _workers(pool.pid)
        metrics = _get(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        pool.terminate()
        pool.wait(30)
    assert first[0] in now and first[1] not in now and 2 == len(now)
    assert "fanout_process_restarts_total 1.0" in metrics
