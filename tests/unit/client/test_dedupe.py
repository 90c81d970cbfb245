"""Duplicates are dropped by event id, with memory bounded to the most recent ids."""

from __future__ import annotations

import pytest

from fanout.client import RecentIds


def test_a_repeated_id_is_a_duplicate() -> None:
    """The first sight of an id is new; the second is a duplicate."""
    recent = RecentIds(10)
    assert (True, False, True) == (recent.add("evt_1"), recent.add("evt_1"), recent.add("evt_2"))


def test_memory_is_bounded_and_the_oldest_ids_are_forgotten() -> None:
    """Past its capacity the set forgets the oldest ids first and never grows."""
    recent = RecentIds(3)
    for i in range(5):
        recent.add(f"evt_{i}")
    assert 3 == len(recent)
    assert "evt_0" not in recent and "evt_1" not in recent
    assert not recent.add("evt_4")  # still remembered
    assert recent.add("evt_0")  # forgotten, so new again


def test_a_capacity_below_one_is_refused() -> None:
    """A set that could remember nothing is a configuration error."""
    with pytest.raises(ValueError, match="capacity"):
        RecentIds(0)
