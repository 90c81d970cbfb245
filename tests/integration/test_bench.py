"""The benchmark harness works end to end (`fanout bench --smoke`); it checks shape, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.bench.plan import AUDIENCES, SMOKE
from fanout.bench.report import targets
from fanout.bench.results import Baseline, PoolFailure, Results, Throughput

#: Every target the report judges on a run with a soak, a pool curve and a broadcast: all of them.
EVERY_TARGET = {
    "worker_over_floor",
    "aiobotocore_over_worker",
    "inline_over_worker",
    "publish_p99_max_ms",
    "publish_p99_1000_over_1",
    "latency_p95_ms_fanout_20",
    "rss_mb_per_process",
    "event_fanout_1_over_post_fanout_20",
    "inline_over_worker_fanout_1",
    "rss_growth_mb_second_half",
    "broadcast_over_point_to_point",
    "broadcast_urgent_p95_ms",
}


def _ran(t: Throughput, fanout: int) -> None:
    """A throughput phase delivered whole events and measured a rate and the worker's CPU."""
    assert t.posts == t.events * fanout > 0, fanout
    assert t.posts_per_s > 0 and t.worker_cpu_us_per_post > 0 and t.worker_cpu_share > 0, fanout


def _posted(b: Baseline) -> None:
    assert b.received >= b.posts > 0 and b.posts_per_s > 0 and b.cpu_us_per_post > 0


@pytest.mark.timeout(240)
def test_smoke_bench_runs_every_phase_of_its_plan(tmp_path: Path) -> None:
    """A smoke run exits 0, prints the table, and writes a result with every phase its plan lists, well
    formed, every frame received and every target judged."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "bench", "--smoke", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Targets" in proc.stdout and "Broadcast to" in proc.stdout and "Pool curve" in proc.stdout
    doc = json.loads(out.read_text())
    r = Results.from_json(doc)  # the typed schema: a missing or unknown key fails here
    assert (doc, list(doc)) == (r.to_json(), list(r.to_json()))  # nothing beside it, in the files' order
    assert ("smoke", SMOKE.users) == (r.mode, r.connections)
    assert r.machine.cores and r.machine.date

    assert list(r.throughput) == list(SMOKE.throughput_posts)
    for fanout, t in r.throughput.items():
        _ran(t, fanout)
        assert t.worker_cpu_us_per_event is not None and t.worker_processes_seen is None
    assert [1, 20] == list(r.latency_by_fanout)
    assert all(lat.n > 0 and lat.p95 > 0 for lat in r.latency_by_fanout.values())
    assert list(AUDIENCES) == list(r.publish_ms) and list(SMOKE.inline_calls) == list(r.inline.request_ms)
    assert all(p.n == SMOKE.publish_calls and p.p99 > 0 for p in r.publish_ms.values())
    assert list(SMOKE.inline_calls.values()) == [p.n for p in r.inline.request_ms.values()]
    assert r.inline.cpu_us_per_post > 0 and (r.inline.cpu_us_per_event_fanout_1 or 0) > 0
    for baseline in (r.aiobotocore, r.floor, r.client_floor):
        _posted(baseline)
    assert r.rss_mb_per_process and min(r.rss_mb_per_process) > 0

    assert r.soak is not None and r.soak.seconds == SMOKE.soak_s and r.soak.latency_ms.n > 0
    assert len(r.soak.rss_mb_samples) >= 2
    assert r.pool is not None and list(r.pool) == list(SMOKE.pool)
    for size, entry in r.pool.items():
        assert not isinstance(entry, PoolFailure), entry
        _ran(entry, 20)
        assert (entry.worker_processes_seen or 0) > size  # the supervisor and its children
    b, last = r.broadcast, r.pool[SMOKE.pool[-1]]
    assert b is not None and isinstance(last, Throughput)
    assert (b.connections, b.processes) == (SMOKE.broadcast + r.connections, SMOKE.pool[-1])
    assert b.posts >= b.connections and b.posts_per_s > 0 and b.worker_cpu_us_per_post > 0
    assert b.point_to_point_posts_per_s == last.posts_per_s
    # the ratio is rounded from the unrounded rate: it may differ from one of the rounded rates by 0.01
    assert b.over_point_to_point == pytest.approx(b.posts_per_s / last.posts_per_s, abs=0.0051)
    assert b.urgent_ms.n > 0 and b.rss_mb.first > 0

    phases = {f"throughput_fanout_{f}" for f in SMOKE.throughput_posts} | {
        *("latency_fanout_1", "latency_fanout_20", "inline", "aiobotocore", "floor", "client_floor"),
        *("broadcast", "broadcast_notifications"),
    }
    assert phases == set(r.checks)
    assert all(c.received >= c.expected > 0 for c in r.checks.values()), r.checks
    assert r.received_all
    assert EVERY_TARGET == set(r.targets) and r.targets == targets(r)
