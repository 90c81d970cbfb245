"""Throttle awareness: an optional per-process post rate that halves when 429s pile up.

API Gateway's account-wide limit (10,000 requests/s, 5,000 burst) is shared by every API in the
region, so a worker that keeps retrying at full speed after 429s feeds a retry storm. Each window
(1 s) the limiter looks at the share of posts answered 429: above ``threshold`` it paces posts at
half the rate it observed; at or below it, it adds ``recovery_per_s`` back each second, and stops
pacing once it is past any plausible limit (or at the configured ceiling). A stray 429 changes
nothing, nor does a window too sparse to judge (fewer than ``MIN_POSTS`` posts).
"""

from __future__ import annotations

import asyncio
import time

MIN_POSTS = 20  # a window with fewer posts says too little to cut the rate on
UNPACED_ABOVE = 10_000.0  # API Gateway's regional limit: pacing beyond it protects nothing


class AdaptiveLimiter:
    """Paces posts: ``await acquire()`` before each post, ``record()`` after it."""

    def __init__(
        self,
        rate: float | None = None,
        *,
        floor: float = 20.0,
        recovery_per_s: float = 100.0,
        threshold: float = 0.05,
        window_s: float = 1.0,
    ) -> None:
        self.ceiling = rate
        self.rate = rate
        self.floor = floor
        self.recovery = recovery_per_s
        self.threshold = threshold
        self.window = window_s
        self.waited_s = 0.0
        self._next = 0.0
        self._changes = 0  # rate changes so far: a slot booked before the last one is booked again
        self._window_start = time.monotonic()
        self._posts = 0
        self._throttled = 0

    async def acquire(self) -> None:
        # A slot is booked at the rate of its moment; when the rate changes, the posts still waiting book
        # again (checked at least once a window). Booked once, 300 posts queued at the floor took 15 s
        # though the rate was back past 1,400/s by then; booked again, 3.2 s.
        while self.rate is not None:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate
            if start <= now:
                return
            booked = self._changes
            while (left := start - time.monotonic()) > 0 and booked == self._changes:
                step = min(left, self.window)
                self.waited_s += step
                await asyncio.sleep(step)
            if booked == self._changes:
                return

    def record(self, throttled: bool) -> None:
        """Count one post's answer; adjust the rate at the end of each window."""
        self._posts += 1
        self._throttled += throttled
        now = time.monotonic()
        if now - self._window_start >= self.window:
            self._adjust(now)

    def _adjust(self, now: float) -> None:
        before = self.rate
        self._set_rate(now)
        if self.rate != before:
            self._changes += 1
            self._next = now
        self._window_start, self._posts, self._throttled = now, 0, 0

    def _set_rate(self, now: float) -> None:
        elapsed = now - self._window_start
        observed = self._posts / elapsed
        share = self._throttled / self._posts if self._posts else 0.0
        if share > self.threshold:
            if self._posts >= MIN_POSTS:
                base = observed if self.rate is None else min(self.rate, observed)
                self.rate = max(self.floor, base / 2)
        elif self.rate is not None:
            grown = self.rate + self.recovery * elapsed
            if self.ceiling is not None:
                self.rate = min(self.ceiling, grown)
            else:
                self.rate = None if grown >= UNPACED_ABOVE else grown
