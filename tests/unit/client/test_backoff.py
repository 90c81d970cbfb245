"""Reconnect delays: exponential bound, full jitter, a cap, and a reset once a connection came up."""

from __future__ import annotations

import random

from fanout.client import Backoff


def test_the_bound_doubles_per_attempt_up_to_the_cap() -> None:
    """The largest delay doubles with each attempt from base_s and stops at cap_s."""
    backoff = Backoff(base_s=0.5, cap_s=4.0, rng=random.Random(1))
    bounds = []
    for _ in range(6):
        bounds.append(backoff.bound())
        backoff.next()
    assert [0.5, 1.0, 2.0, 4.0, 4.0, 4.0] == bounds


def test_delays_are_fully_jittered_between_zero_and_the_bound() -> None:
    """Each delay is uniform in [0, bound]: over many draws they spread across the whole range."""
    delays = []
    for seed in range(400):
        backoff = Backoff(base_s=1.0, cap_s=30.0, rng=random.Random(seed), attempt=3)
        delays.append(backoff.next())
    assert all(0 <= d <= 8.0 for d in delays)
    assert min(delays) < 0.5 and max(delays) > 7.5  # full jitter, not "bound plus a little"


def test_reset_starts_again_from_the_base() -> None:
    """After reset (a connection came up), the next delay is bounded by base_s again."""
    backoff = Backoff(base_s=0.25, cap_s=30.0, rng=random.Random(2))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert 0.25 == backoff.bound()
    assert 0 <= backoff.next() <= 0.25


def test_a_huge_attempt_count_does_not_overflow() -> None:
    """Thousands of failed attempts keep the bound at the cap instead of overflowing a float."""
    backoff = Backoff(base_s=0.5, cap_s=30.0, attempt=5000)
    assert 30.0 == backoff.bound()
