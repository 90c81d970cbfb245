"""Reconnect delays: exponential backoff with full jitter.

Full jitter (a uniform delay between 0 and the exponential bound) spreads the reconnects of many clients
that lost their connections at the same moment (a deploy, a network blip) instead of bringing them back
in waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """The delay before each reconnect attempt: uniform in ``[0, min(cap_s, base_s * 2**attempt)]``."""

    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def bound(self) -> float:
        """The largest delay the next attempt may wait."""
        return min(self.cap_s, self.base_s * 2.0 ** min(self.attempt, 32))

    def next(self) -> float:
        """The delay before the next attempt; each call doubles the bound up to ``cap_s``."""
        delay = self.rng.uniform(0, self.bound())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection came up and answered: the next loss starts again from ``base_s``."""
        self.attempt = 0
