"""The adaptive limiter paces posts only when 429s pile up, and recovers when they stop."""

import asyncio
import time

import pytest

from fanout.worker.limiter import AdaptiveLimiter


def _window(limiter: AdaptiveLimiter, posts: int, throttled: int) -> None:
    for i in range(posts):
        limiter.record(i < throttled)
    limiter._window_start -= limiter.window  # close the window now
    limiter.record(False)


def test_a_storm_of_429s_halves_the_rate_and_stray_ones_do_not() -> None:
    """3% 429s leave posting unpaced; 30% pace it at about half the observed rate, then again half."""
    limiter = AdaptiveLimiter(floor=1)
    _window(limiter, 1000, 30)
    assert limiter.rate is None
    _window(limiter, 1000, 300)
    first = limiter.rate
    assert first is not None
    assert first >= 1
    _window(limiter, 1000, 300)
    assert limiter.rate is not None
    assert limiter.rate <= first / 2 + 1e-9


@pytest.mark.parametrize("throttled", [0, 30], ids=["no 429s", "3% of 429s"])
def test_rate_recovers_at_or_under_the_threshold(throttled: int) -> None:
    """After a storm, a window with no 429s, or with a trickle under the threshold, raises the pace."""
    limiter = AdaptiveLimiter(5000, recovery_per_s=100)
    _window(limiter, 1000, 300)
    cut = limiter.rate
    assert cut is not None
    _window(limiter, 1000, throttled)
    assert limiter.rate is not None
    assert cut < limiter.rate <= 5000


def test_a_sparse_window_does_not_cut_the_rate() -> None:
    """One 429 among three posts is no storm."""
    limiter = AdaptiveLimiter()
    _window(limiter, 3, 1)
    assert limiter.rate is None


async def test_configured_rate_paces_posts() -> None:
    """At 100 posts/s, 21 posts take about 0.2 s."""
    limiter = AdaptiveLimiter(100)
    started = time.monotonic()
    for _ in range(21):
        await limiter.acquire()
    assert time.monotonic() - started >= 0.19


async def test_posts_waiting_at_a_cut_rate_go_at_the_recovered_one() -> None:
    """A backlog booked at the floor is booked again as the rate grows back: 100 posts that the floor
    alone would spread over 5 s pass in a fraction of that once no 429 comes."""
    limiter = AdaptiveLimiter(floor=20, recovery_per_s=1000, window_s=0.1)
    for i in range(40):  # a window of 40 posts over 2 s, a quarter of them 429: cut to the floor
        limiter.record(i < 10)
    limiter._window_start -= 2
    limiter.record(False)
    assert 20 == limiter.rate

    async def post() -> None:
        await limiter.acquire()
        limiter.record(False)

    started = time.monotonic()
    await asyncio.gather(*(post() for _ in range(100)))
    assert time.monotonic() - started < 2.0
