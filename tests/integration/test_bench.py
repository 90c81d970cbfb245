"""The benchmark harness works end to end (`fanout bench --quick`); it checks shape, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fanout.bench.results import Results

LATEST = Path(__file__).resolve().parents[2] / "bench" / "results" / "latest.json"
#: Keys only the full mode writes: the soak, the pool curve, and the targets judged on them.
FULL_ONLY = {"soak", "pool", "targets.rss_growth_mb_second_half", "targets.broadcast_over_point_to_point"}
#: Keys newer than the committed latest.json (an older full run, until the next full run replaces it):
#: the broadcast section and its target, and the CPU per event at fan-out 1 and 2 with its targets. A
#: quick run writes them; the comparison tolerates their absence from the committed file, and only theirs.
NEWER = (
    "broadcast",
    "targets.broadcast_urgent_p95_ms",
    "throughput.2",
    "inline.cpu_us_per_event_fanout_1",
    "targets.event_fanout_1_over_post_fanout_20",
    "targets.inline_over_worker_fanout_1",
)
NEWER_LEAVES = ("worker_cpu_us_per_event",)  # of every throughput phase

REQUIRED = (
    "machine",
    "posts_per_s",
    "worker_cpu_us_per_post",
    "inline_cpu_us_per_post",
    "aiobotocore_cpu_us_per_post",
    "floor_cpu_us_per_post",
    "client_floor_cpu_us_per_post",
    "latency_ms",
    "publish_ms",
    "rss_mb",
)


def _numbers(value: Any, where: str) -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(where, float(value))]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{where}.{k}")]
    return []


def _newer(path: str) -> bool:
    return (
        any(path == k or path.startswith(f"{k}.") for k in NEWER) or path.rsplit(".", 1)[-1] in NEWER_LEAVES
    )


def _key_paths(value: Any, where: str = "") -> set[str]:
    """Every dotted path of an object key in a JSON document (lists are leaves)."""
    if not isinstance(value, dict):
        return set()
    paths = set()
    for k, v in value.items():
        path = f"{where}.{k}" if where else k
        paths |= {path} | _key_paths(v, path)
    return paths


@pytest.mark.timeout(300)
def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    """A quick run exits 0, prints the table, broadcasts to every connection, and writes latest.json's keys
    (full-only ones aside, newer ones beside), all positive."""
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "fanout", "bench", "--quick", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Targets" in proc.stdout and "floor" in proc.stdout
    r = json.loads(out.read_text())
    for key in REQUIRED:
        assert key in r, key
    assert {"cpu", "cores", "python", "date"} <= set(r["machine"])
    assert set(r["latency_ms"]) == {"p50", "p95", "p99"}
    assert set(r["publish_ms"]) == {"1", "100", "1000"}
    assert all("p99" in v for v in r["publish_ms"].values())
    figures = [n for key in REQUIRED[1:] for n in _numbers(r[key], key)]
    assert figures
    assert all(v > 0 for _, v in figures), [f for f in figures if f[1] <= 0]
    for phase, check in r["checks"].items():
        assert check["received"] >= check["expected"] > 0, phase
    assert r["received_all"] is True
    assert r["broadcast"]["posts"] >= r["broadcast"]["connections"] > 5000
    committed = json.loads(LATEST.read_text())
    full_only = {p for p in _key_paths(committed) if any(p == k or p.startswith(f"{k}.") for k in FULL_ONLY)}
    lacking = {p for p in _key_paths(r) - _key_paths(committed) if _newer(p)}
    assert _key_paths(committed) - full_only == _key_paths(r) - lacking
    assert [k for k in r if k not in lacking] == [k for k in committed if k not in FULL_ONLY]
    assert r == Results.from_json(r).to_json()
