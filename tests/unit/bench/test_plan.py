"""The plans: smoke, quick or full, and a soak given on the command line."""

from __future__ import annotations

from dataclasses import fields

import pytest

from fanout.bench.plan import AUDIENCES, FULL, QUICK, SMOKE, plan_for


def test_each_mode_picks_its_plan() -> None:
    """smoke, quick and full pick their plans; only full and smoke soak and run the pool curve."""
    assert (SMOKE, QUICK, FULL) == tuple(plan_for(m) for m in ("smoke", "quick", "full"))
    assert (0.0, ()) == (QUICK.soak_s, QUICK.pool)
    assert (600.0, (1, 2)) == (FULL.soak_s, FULL.pool)
    with pytest.raises(KeyError):
        plan_for("huge")


def test_soak_s_replaces_only_the_soak() -> None:
    """--soak-s changes the soak and nothing else."""
    plan = plan_for("full", soak_s=120)
    assert 120 == plan.soak_s
    assert FULL.throughput_posts == plan.throughput_posts and FULL.pool == plan.pool


def test_every_plan_covers_every_audience_and_the_headline_fanout() -> None:
    """Quick and full time the inline design at every audience, smoke at those its clients cover; each
    measures throughput at fan-out 20, with a connected user for every recipient."""
    for plan in (QUICK, FULL):
        assert list(AUDIENCES) == list(plan.inline_calls)
    for plan in (SMOKE, QUICK, FULL):
        assert set(plan.inline_calls) <= set(AUDIENCES) and {1, 100} <= set(plan.inline_calls)
        assert 20 in plan.throughput_posts
        # an inline audience of 1,000 is 1,000 connected users, a fan-out of 200 is 200
        assert plan.users >= max(*plan.inline_calls, *plan.throughput_posts)


def test_both_plans_broadcast_to_virtual_connections() -> None:
    """The full plan broadcasts to issue 13's 100,000 connections, the quick one to 5,000."""
    assert (5000, 100_000) == (QUICK.broadcast, FULL.broadcast)


def test_the_smoke_plan_runs_every_phase_of_the_full_plan_at_the_smallest_counts() -> None:
    """Smoke has every phase and fan-out the full plan has (soak, pool, broadcast), none larger than quick."""
    assert SMOKE.throughput_posts.keys() == FULL.throughput_posts.keys()
    assert SMOKE.soak_s > 0 and SMOKE.pool and SMOKE.broadcast > 0
    assert all(SMOKE.throughput_posts[f] <= n for f, n in QUICK.throughput_posts.items())
    assert all(n <= QUICK.inline_calls[a] for a, n in SMOKE.inline_calls.items())
    scalars = [f.name for f in fields(SMOKE) if isinstance(getattr(SMOKE, f.name), (int, float))]
    assert all(getattr(SMOKE, name) <= getattr(QUICK, name) for name in scalars if name != "soak_s")
