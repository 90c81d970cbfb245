"""The adaptive limiter paces posts only after throttling, and backs off on 429s."""

import time

from fanout.worker.limiter import AdaptiveLimiter


async def test_unlimited_until_throttled_then_halves() -> None:
    """No configured rate: free until a 429, then about half the observed rate; repeated 429s halve again."""
    limiter = AdaptiveLimiter(floor=1)
    for _ in range(200):
        await limiter.acquire()
    assert limiter.rate is None
    limiter.throttled()
    first = limiter.rate
    assert first is not None and first >= 1
    limiter._last_cut -= 1  # a later, separate throttling signal
    limiter.throttled()
    assert limiter.rate is not None and limiter.rate <= first / 2 + 1e-9


async def test_configured_rate_paces_posts() -> None:
    """At 100 posts/s, 21 posts take about 0.2 s."""
    limiter = AdaptiveLimiter(100)
    started = time.monotonic()
    for _ in range(21):
        await limiter.acquire()
    assert time.monotonic() - started >= 0.19
