"""Throttle awareness: an optional per-process post rate that halves on 429s and recovers slowly.

API Gateway's account-wide limit (10,000 requests/s, 5,000 burst) is shared by every API in the
region, so a worker that keeps retrying at full speed after a 429 feeds a retry storm. Without a
configured rate the limiter costs nothing until the first 429; from then on it paces posts at half
the rate observed, and adds back ``recovery_per_s`` posts/s every second without throttling.
"""

from __future__ import annotations

import asyncio
import time


class AdaptiveLimiter:
    """Paces posts: ``await acquire()`` before each, ``throttled()`` on a 429."""

    def __init__(
        self, rate: float | None = None, *, floor: float = 20.0, recovery_per_s: float = 50.0
    ) -> None:
        self.ceiling = rate
        self.rate = rate
        self.floor = floor
        self.recovery = recovery_per_s
        self.waited_s = 0.0
        self._next = 0.0
        self._last_cut = 0.0
        self._last_grow = time.monotonic()
        self._window_start = time.monotonic()
        self._window_posts = 0

    async def acquire(self) -> None:
        if self.rate is None:
            self._window_posts += 1
            return
        now = time.monotonic()
        self._grow(now)
        start = max(now, self._next)
        self._next = start + 1.0 / self.rate
        wait = start - now
        if wait > 0:
            self.waited_s += wait
            await asyncio.sleep(wait)

    def _grow(self, now: float) -> None:
        assert self.rate is not None
        elapsed = now - self._last_grow
        if elapsed >= 1.0:
            self._last_grow = now
            if self.ceiling is None and self.rate > 10_000:
                self.rate = None  # recovered beyond any plausible limit: stop pacing
                return
            grown = self.rate + self.recovery * elapsed
            self.rate = grown if self.ceiling is None else min(self.ceiling, grown)

    def throttled(self) -> None:
        """A 429 arrived: halve the rate (at most once per 200 ms, so a burst of 429s is one signal)."""
        now = time.monotonic()
        if now - self._last_cut < 0.2:
            return
        self._last_cut = now
        self._last_grow = now
        if self.rate is None:
            elapsed = max(0.05, now - self._window_start)
            observed = self._window_posts / elapsed
            self._window_start, self._window_posts = now, 0
            self.rate = max(self.floor, observed / 2)
        else:
            self.rate = max(self.floor, self.rate / 2)
