"""The publishing benchmark's bookkeeping: percentiles, targets and the table, without a stack."""

from __future__ import annotations

from fanout.bench.publishing import pct, summary, table, targets


def _times(p50: float, p99: float) -> dict[str, float]:
    return {"p50": p50, "p95": p99, "p99": p99, "n": 300, "cpu_p99": p99 / 2}


def test_percentiles_are_nearest_rank() -> None:
    """p50 of 1..100 is 50 and p99 is 99; an empty sample reads 0."""
    values = [float(v) for v in range(100, 0, -1)]
    assert (50.0, 99.0, 100.0) == (pct(values, 50), pct(values, 99), pct(values, 100))
    assert 0.0 == pct([], 50)
    assert {"p50": 2.0, "p95": 3.0, "p99": 3.0, "n": 3} == summary([3.0, 1.0, 2.0])


def test_targets_compare_each_figure_with_the_issue() -> None:
    """Each target holds its value and whether it is met; the p99 ratio takes the worse audience."""
    calls = {
        "direct": {"1": _times(5, 12), "1000": _times(6, 20)},
        "thread": {"1": _times(0.1, 0.8), "1000": _times(0.2, 1.5)},
        "async": {"1": _times(0.1, 0.5), "1000": _times(0.2, 0.9)},
    }
    rate = {"thread": {"events_per_s": 2500.0}, "async": {"events_per_s": 1800.0}}
    e2e = {"added_p50_ms": 7.5}
    t = targets(calls, rate, e2e)
    assert (1.5, False) == (t["publish_p99_max_ms_thread"]["value"], t["publish_p99_max_ms_thread"]["met"])
    assert (0.9, True) == (t["publish_p99_max_ms_async"]["value"], t["publish_p99_max_ms_async"]["met"])
    assert (13.3, True) == (t["direct_over_thread_p99"]["value"], t["direct_over_thread_p99"]["met"])
    assert (True, False) == (t["events_per_s_thread"]["met"], t["events_per_s_async"]["met"])
    assert t["linger_added_p50_ms"]["met"]
    results = {
        "publish_ms": calls,
        "sustained": {
            f: {"events_per_s": v["events_per_s"], "cpu_us_per_event": 300.0} for f, v in rate.items()
        },
        "end_to_end_ms": {"linger_ms": 5.0, "direct": _times(30, 50), "background": _times(37.5, 60)},
        "targets": t,
    }
    text = table(results)
    assert "publish_p99_max_ms_thread" in text and "NO" in text and "37.5" in text
