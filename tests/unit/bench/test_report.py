"""The report: targets judged on the results, and the table printed at the end of a run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from fanout.bench.report import table, targets
from fanout.bench.results import PoolFailure, Results, Target

LATEST = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"


def latest() -> Results:
    return Results.from_json(json.loads(LATEST.read_text()))


def test_targets_of_the_committed_run_are_recomputed_unchanged() -> None:
    """Judging latest.json's figures again gives exactly the targets it recorded."""
    r = latest()
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
