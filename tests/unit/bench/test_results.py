"""The typed results and their JSON: the committed history reads back into types and writes out unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fanout.bench.results import (
    Check,
    Latency,
    Percentiles,
    PoolFailure,
    Results,
    Rss,
    Target,
    Throughput,
    pct,
)
from tests.unit.bench.samples import BROADCAST

LATEST = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"
#: A full run recorded before the broadcast phase existed (the figures these tests name): a new
#: latest.json must not change what they check.
RECORDED = Path(__file__).with_name("recorded_run.json")


def latest() -> Results:
    return Results.from_json(json.loads(RECORDED.read_text()))


@pytest.mark.parametrize("path", [LATEST, RECORDED], ids=["latest", "recorded"])
def test_latest_json_round_trips_byte_for_byte(path: Path) -> None:
    """A committed run read into Results and written again is the same text, key order included."""
    text = path.read_text()
    assert text == json.dumps(Results.from_json(json.loads(text)).to_json(), indent=2) + "\n"


def test_repeated_figures_are_derived_from_one_place() -> None:
    """The top-level headline figures follow the fan-out-20 phase and the baselines they repeat."""
    r = latest()
    faster = replace(r.throughput[20], posts_per_s=1.0, worker_cpu_us_per_post=2.0)
    doc = replace(r, throughput={**r.throughput, 20: faster}).to_json()
    assert (1.0, 2.0) == (doc["posts_per_s"], doc["worker_cpu_us_per_post"])
    assert doc["throughput"]["20"]["posts_per_s"] == doc["posts_per_s"]
    assert doc["inline"]["request_ms"] == doc["inline_publish_ms"]
    assert doc["floor"]["cpu_us_per_post"] == doc["floor_cpu_us_per_post"]
    assert round(2.0 / r.client_floor.cpu_us_per_post, 2) == doc["worker_over_client_floor"]
    assert max(r.rss_mb_per_process) == doc["rss_mb"]


def test_quick_results_omit_the_soak_and_the_pool() -> None:
    """A run without soak or pool writes neither key, and reads back without them."""
    r = replace(latest(), soak=None, pool=None)
    doc = r.to_json()
    assert not {"soak", "pool"} & set(doc)
    assert Results.from_json(doc) == r


def test_a_pool_size_that_failed_round_trips() -> None:
    """A pool entry with an error is written as {"error": ...} and read back as a PoolFailure."""
    r = latest()
    assert r.pool is not None
    r = replace(r, pool={1: r.pool[1], 2: PoolFailure("worker did not become ready")})
    doc = r.to_json()
    assert {"error": "worker did not become ready"} == doc["pool"]["2"]
    assert "worker_processes_seen" in doc["pool"]["1"]
    assert Results.from_json(json.loads(json.dumps(doc))) == r


def test_throughput_writes_processes_seen_only_in_the_pool() -> None:
    """A plain throughput phase has no worker_processes_seen key; a pool phase has it."""
    t = Throughput(10, 1, 0.5, 20.0, 100.0, 0.2, 1.1)
    assert "worker_processes_seen" not in t.to_json()
    assert 3 == replace(t, worker_processes_seen=3).to_json()["worker_processes_seen"]


def test_received_all_needs_every_check() -> None:
    """One check short of its expected frames makes received_all false."""
    r = latest()
    assert r.received_all
    short = replace(r, checks={**r.checks, "floor": Check(expected=10, received=9)})
    assert not short.received_all
    assert False is short.to_json()["received_all"]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 99, 0.0), ([5.0], 50, 5.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0], 99, 4.0)],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float) -> None:
    """pct is the nearest-rank percentile, 0 for no samples."""
    assert expected == pct(values, q)


def test_percentiles_and_latency_round_to_the_microsecond() -> None:
    """Percentiles.of rounds to 3 decimals and counts the samples; Latency adds the offered rate."""
    values = [i + 0.12345 for i in range(100)]
    assert Percentiles(49.123, 94.123, 98.123, 100) == Percentiles.of(values)
    lat = Latency.at(211.6, values)
    assert {
        "p50": 49.123,
        "p95": 94.123,
        "p99": 98.123,
        "n": 100,
        "offered_posts_per_s": 211.6,
    } == lat.to_json()


@pytest.mark.parametrize(
    ("value", "bound", "met"),
    [(1.3, "<= 1.3", True), (1.31, "<= 1.3", False), (3.0, ">= 3", True), (2.99, ">= 3", False)],
)
def test_a_target_is_met_at_its_bound(value: float, bound: str, met: bool) -> None:
    """A target is met at and inside its bound, in either direction, and says so in its JSON."""
    assert met is Target(value, bound).met
    assert met is Target(value, bound).to_json()["met"]


def test_rss_of_samples_is_first_max_last_and_growth() -> None:
    """Rss.of keeps the first, largest and last sample, and the growth from first to last."""
    assert Rss(80.0, 95.5, 90.0, 10.0) == Rss.of([80.0, 95.5, 90.0])
    assert Rss(90.0, 90.0, 85.5, -4.5) == Rss.of([90.0, 85.5])


def test_a_broadcast_round_trips_after_the_pool() -> None:
    """A run with a broadcast writes it, nested keys included, after the pool and reads it back equal."""
    r = replace(latest(), broadcast=BROADCAST)
    doc = json.loads(json.dumps(r.to_json()))
    keys = list(doc)
    assert keys.index("pool") + 1 == keys.index("broadcast") == keys.index("received_all") - 1
    assert {"first": 180.0, "max": 184.5, "last": 183.0, "growth": 3.0} == doc["broadcast"]["rss_mb"]
    assert {"p50": 40.0, "p95": 400.0, "p99": 900.0, "n": 250} == doc["broadcast"]["urgent_ms"]
    assert 0.8 == doc["broadcast"]["over_point_to_point"]
    assert Results.from_json(doc) == r


def test_a_run_without_a_broadcast_writes_no_broadcast_key() -> None:
    """The committed run has no broadcast: it reads back as None and writes no key."""
    r = latest()
    assert r.broadcast is None
    assert "broadcast" not in r.to_json()
