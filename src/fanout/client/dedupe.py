"""Duplicate frames, dropped by event id with bounded memory."""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    """The last ``capacity`` event ids seen; an id older than that is forgotten. Duplicates come from
    retries whose outcome was unknown and from replays after a resume, both close to the original, so a
    few thousand ids cover them."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False when it was already there (a duplicate)."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True
