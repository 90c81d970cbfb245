"""The plan: quick or full, and a soak given on the command line."""

from __future__ import annotations

from fanout.bench.plan import AUDIENCES, FULL, QUICK, plan_for


def test_quick_and_full_plans() -> None:
    """--quick picks the quick plan; without it, the full plan with its soak and pool."""
    assert QUICK == plan_for(quick=True)
    assert FULL == plan_for(quick=False)
    assert (0.0, ()) == (QUICK.soak_s, QUICK.pool)
    assert (600.0, (1, 2)) == (FULL.soak_s, FULL.pool)


def test_soak_s_replaces_only_the_soak() -> None:
    """--soak-s changes the soak and nothing else."""
    plan = plan_for(quick=False, soak_s=120)
    assert 120 == plan.soak_s
    assert FULL.throughput_posts == plan.throughput_posts and FULL.pool == plan.pool


def test_every_plan_covers_every_audience_and_the_headline_fanout() -> None:
    """Each plan times the inline design at every audience and measures throughput at fan-out 20."""
    for plan in (QUICK, FULL):
        assert set(AUDIENCES) == set(plan.inline_calls)
        assert 20 in plan.throughput_posts


def test_both_plans_broadcast_to_virtual_connections() -> None:
    """The full plan broadcasts to issue 13's 100,000 connections, the quick one to 5,000."""
    assert (5000, 100_000) == (QUICK.broadcast, FULL.broadcast)
