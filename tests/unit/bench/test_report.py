"""The report: targets judged on the results, and the table printed at the end of a run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fanout.bench.report import table, targets
from fanout.bench.results import Percentiles, PoolFailure, Results, Target
from tests.unit.bench.samples import BROADCAST

LATEST = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"
#: A full run recorded before the broadcast phase existed (the figures these tests name): a new
#: latest.json must not change what they check.
RECORDED = Path(__file__).with_name("recorded_run.json")


def latest() -> Results:
    return Results.from_json(json.loads(RECORDED.read_text()))


@pytest.mark.parametrize("path", [LATEST, RECORDED], ids=["latest", "recorded"])
def test_targets_of_the_committed_run_are_recomputed_unchanged(path: Path) -> None:
    """Judging a committed run's figures again gives exactly the targets it recorded."""
    r = Results.from_json(json.loads(path.read_text()))
    assert r.targets == targets(r)


def test_targets_follow_the_figures() -> None:
    """A worker twice as costly halves the aiobotocore ratio; no soak drops the RSS-growth target."""
    r = replace(latest(), soak=None)
    costly = replace(r.throughput[20], worker_cpu_us_per_post=r.throughput[20].worker_cpu_us_per_post * 2)
    judged = targets(replace(r, throughput={**r.throughput, 20: costly}))
    assert round(r.aiobotocore.cpu_us_per_post / costly.worker_cpu_us_per_post, 2) == (
        judged["aiobotocore_over_worker"].value
    )
    assert "rss_growth_mb_second_half" not in judged
    assert Target(11.326, "<= 10") == judged["publish_p99_max_ms"]


def test_table_shows_every_section_and_target() -> None:
    """The table of a full run has the throughput rows, the baselines, the soak, the pool and each target."""
    text = table(latest())
    assert text.startswith("fanout bench (full) on Intel(R) Xeon(R) Processor, 2 cores")
    # a run recorded before per-event CPU was measured has no CPU column
    assert "        20       2222        119.7                  30000    1.38" in text
    assert "  (c) floor: unsigned aiohttp POST          136.3       6468" in text
    assert "  worker / (c') = 3.18: the worker's CPU beyond its HTTP requests" in text
    assert "  during a 600s soak: 88.5 -> 88.5 MB (max 88.5)" in text
    assert "          2       2984        127.3          0.38    1.46" in text
    assert "  publish_p99_max_ms             11.326    <= 10  NO" in text
    assert text.endswith("every frame arrived: yes")


def test_table_of_a_quick_run_without_soak_or_pool() -> None:
    """Without a soak or a pool the table leaves out those sections; a failed pool size shows its error."""
    r = latest()
    quick = table(replace(r, soak=None, pool=None))
    assert "soak" not in quick and "Pool curve" not in quick
    failed = table(replace(r, pool={1: PoolFailure("worker did not become ready")}))
    assert "          1 worker did not become ready" in failed


def test_table_of_a_smoke_run_leaves_untimed_inline_audiences_blank() -> None:
    """An audience the inline design was not timed at (the smoke plan's 1,000) keeps its publish row."""
    r = latest()
    inline = replace(r.inline, request_ms={a: p for a, p in r.inline.request_ms.items() if a != 1000})
    text = table(replace(r, inline=inline))
    assert "       100           4.57    10.95        339.7     391.5" in text
    assert "      1000           4.85    11.33            -         -" in text


def test_broadcast_targets_need_the_broadcast_and_the_pool_for_the_ratio() -> None:
    """The notification p95 is judged whenever the broadcast ran; the ratio only beside a pool curve."""
    r = latest()
    assert not {"broadcast_over_point_to_point", "broadcast_urgent_p95_ms"} & set(targets(r))
    full = targets(replace(r, broadcast=BROADCAST))
    assert (
        Target(0.8, ">= 0.8") == full["broadcast_over_point_to_point"]
        and full["broadcast_over_point_to_point"].met
    )
    assert Target(400.0, "<= 1000") == full["broadcast_urgent_p95_ms"]
    slow = replace(BROADCAST, over_point_to_point=0.79)
    assert not targets(replace(r, broadcast=slow))["broadcast_over_point_to_point"].met
    quick = targets(replace(r, pool=None, broadcast=BROADCAST))
    assert "broadcast_over_point_to_point" not in quick and "broadcast_urgent_p95_ms" in quick


def test_table_shows_the_broadcast() -> None:
    """The broadcast's lines give its rate against point-to-point, the CPU split, RSS and notifications."""
    text = table(replace(latest(), broadcast=BROADCAST))
    assert "Broadcast to 101000 connections" in text and "2 worker process(es), 51 shards" in text
    assert (
        "  2000 posts/s (101000 posts in 50.5s); point-to-point at fan-out 20: 2500 posts/s; ratio 0.8"
        in text
    )
    assert "of which SecantusDB 0.70, emulator 0.30; 250.0 ms per record batch lookup" in text
    assert "  worker RSS (all its processes): 180.0 -> 183.0 MB (max 184.5, growth 3.0)" in text
    assert "p50 40.0  p95 400.0  p99 900.0  (n=250)" in text
    assert "Broadcast" not in table(latest())


def test_table_lists_the_broadcast_targets_aligned() -> None:
    """The targets judged on a broadcast are rows of the table, met or not, in one column however long."""
    r = replace(latest(), broadcast=replace(BROADCAST, urgent_ms=Percentiles(40.0, 1200.0, 1500.0, 250)))
    judged = replace(r, targets=targets(r))
    text = table(judged)
    assert "  broadcast_over_point_to_point      0.8   >= 0.8  yes" in text
    assert "  broadcast_urgent_p95_ms         1200.0  <= 1000  NO" in text
    header = text.index("\nTargets\n") + len("\nTargets\n")
    rows = text[header:].split("\n\n")[0].splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(judged.targets)
    assert 1 == len({row.rindex(" ") for row in rows})  # the "met" column lines up
