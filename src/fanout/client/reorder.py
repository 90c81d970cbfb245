"""In order per ordering key: events that carry ``key`` and ``seq`` are handed on in ``seq`` order, with no
gap; one that arrives early is held back until the missing ones arrive, or until the caller gives up on
them (after a resume, or a resync that moves the key's position).

Events without a key or a seq pass straight through, and so does a newer value of a live counter (a
``bulk`` type, docs/protocol.md section 19): the worker conflates them, so their ``seq`` may skip. A key
seen for the first time starts at its first event, unless its position was set (from the ``seq`` that
came with the data the application loaded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeGuard

from fanout.catalog import policy_for
from fanout.envelope import MAX_SEQ

Frame = dict[str, Any]


def is_seq(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a ``seq`` a position can be: an int from 0 to ``MAX_SEQ``. Any other orders
    nothing: taken as a position, every later resume naming it would be refused ``bad_resume``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


class Reorderer:
    """Per-key positions (the last ``seq`` handed on) and the events held back behind a gap."""

    def __init__(
        self,
        hold_s: float = 2.0,
        max_held: int = 1000,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_s = hold_s
        self.max_held = max_held  # per key: more than this behind one gap and the gap is given up at once
        self.max_keys = max_keys
        self._clock = clock
        self.positions: dict[str, int] = {}  # in order of last change: the last ones are the freshest
        self._held: dict[str, dict[int, Frame]] = {}
        self._gap_since: dict[str, float] = {}

    def push(self, frame: Frame) -> list[Frame]:
        """The events ready to hand on now that ``frame`` arrived, in order (possibly none)."""
        key, seq = frame.get("key"), frame.get("seq")
        if not isinstance(key, str) or not is_seq(seq):
            return [frame]
        position = self.positions.get(key)
        if position is None:
            self._move(key, seq)
            return [frame, *self._drain(key)]
        if seq <= position or seq in self._held.get(key, {}):
            return []  # already handed on (or already waiting): a duplicate
        if seq == position + 1 or policy_for(str(frame.get("type"))).latest_only:
            self._move(key, seq)  # a live counter's seq skips the values conflation dropped: never a gap
            return [frame, *self._drain(key)]
        self._held.setdefault(key, {})[seq] = frame
        self._gap_since.setdefault(key, self._clock())
        if len(self._held[key]) > self.max_held:
            return self.skip(key)
        return []

    def held(self, key: str) -> int:
        """Events of ``key`` waiting behind a gap."""
        return len(self._held.get(key, {}))

    def overdue(self) -> list[str]:
        """Keys whose gap has been open for ``hold_s`` or more."""
        cutoff = self._clock() - self.hold_s
        return [key for key, since in self._gap_since.items() if since <= cutoff]

    def skip(self, key: str) -> list[Frame]:
        """Give up on a key's gap: move its position to just before its first held event and hand on
        what is held, in order (the caller tells the application what it lost)."""
        held = self._held.get(key)
        if not held:
            return []
        self._move(key, min(held) - 1)
        return self._drain(key)

    def expect(self, key: str, seq: int) -> list[Frame]:
        """Set a key's position (a resync: the application refetched the key up to ``seq``); held events
        up to it are dropped, those after it handed on as far as they run without a gap."""
        self._move(key, seq)
        held = self._held.get(key, {})
        for stale in [s for s in held if s <= seq]:
            del held[stale]
        return self._drain(key)

    def forget(self, key: str) -> None:
        """Drop a key's position and held events: a stream the client may no longer follow (a revoked
        topic), which its next resume must not name."""
        self.positions.pop(key, None)
        self._held.pop(key, None)
        self._gap_since.pop(key, None)

    def _move(self, key: str, seq: int) -> None:
        self.positions.pop(key, None)
        self.positions[key] = seq
        if len(self.positions) > self.max_keys:
            oldest = next((k for k in self.positions if not self._held.get(k)), None)
            if oldest is not None:
                del self.positions[oldest]

    def _drain(self, key: str) -> list[Frame]:
        out: list[Frame] = []
        held = self._held.get(key)
        position = self.positions[key]
        while held and position + 1 in held:
            position += 1
            out.append(held.pop(position))
        if out:
            self._move(key, position)
        if held:
            if out:
                self._gap_since[key] = self._clock()  # progress: the remaining gap gets its own wait
        else:
            self._held.pop(key, None)
            self._gap_since.pop(key, None)
        return out
