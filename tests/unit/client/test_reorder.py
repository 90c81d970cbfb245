"""Events of one ordering key are handed on in seq order without gaps; a gap is held, then given up."""

from __future__ import annotations

from typing import Any

from fanout.client import Reorderer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ev(seq: int | None, key: str | None = "k", event_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"id": event_id or f"e{seq}", "type": "chat.message"}
    if key is not None:
        frame["key"] = key
    if seq is not None:
        frame["seq"] = seq
    return frame


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames]


def test_events_without_a_key_or_seq_pass_straight_through() -> None:
    """An event without key, or without seq, is handed on at once and changes no position."""
    r = Reorderer()
    assert 1 == len(r.push(ev(None, key=None)))
    assert 1 == len(r.push(ev(None)))
    assert 1 == len(r.push(ev(3, key=None)))
    assert {} == r.positions


def test_a_key_seen_first_starts_at_its_first_event() -> None:
    """Without a position, a key's first event is handed on and becomes the position."""
    r = Reorderer()
    assert [5] == seqs(r.push(ev(5)))
    assert {"k": 5} == r.positions


def test_an_early_event_waits_for_the_gap_then_all_go_in_order() -> None:
    """With position 1, seq 3 and 4 wait; seq 2 releases 2, 3, 4 in order."""
    r = Reorderer()
    r.expect("k", 1)
    assert [] == r.push(ev(3))
    assert [] == r.push(ev(4))
    assert 2 == r.held("k")
    assert [2, 3, 4] == seqs(r.push(ev(2)))
    assert 0 == r.held("k")
    assert {"k": 4} == r.positions


def test_old_and_repeated_seqs_are_dropped() -> None:
    """A seq at or below the position, or one already held, is a duplicate and dropped."""
    r = Reorderer()
    r.expect("k", 5)
    assert [] == r.push(ev(5))
    assert [] == r.push(ev(2))
    assert [] == r.push(ev(7))
    assert [] == r.push(ev(7, event_id="other"))
    assert 1 == r.held("k")


def test_keys_are_independent() -> None:
    """A gap in one key holds nothing of another key."""
    r = Reorderer()
    r.expect("a", 0)
    r.expect("b", 0)
    assert [] == r.push(ev(2, key="a"))
    assert [1] == seqs(r.push(ev(1, key="b")))


def test_a_gap_is_overdue_after_hold_s_and_skip_hands_on_what_was_held() -> None:
    """A gap open for hold_s is overdue; skipping it moves the position and hands on the held events."""
    clock = Clock()
    r = Reorderer(hold_s=2.0, clock=clock)
    r.expect("k", 1)
    r.push(ev(4))
    r.push(ev(5))
    clock.now += 1.9
    assert [] == r.overdue()
    clock.now += 0.2
    assert ["k"] == r.overdue()
    assert [4, 5] == seqs(r.skip("k"))
    assert ([], {"k": 5}) == (r.overdue(), r.positions)


def test_progress_restarts_the_wait_of_a_gap_still_open() -> None:
    """When part of a gap fills, the rest gets a full hold_s again."""
    clock = Clock()
    r = Reorderer(hold_s=2.0, clock=clock)
    r.expect("k", 1)
    r.push(ev(3))
    r.push(ev(5))
    clock.now += 1.5
    assert [2, 3] == seqs(r.push(ev(2)))
    clock.now += 1.5
    assert [] == r.overdue()
    clock.now += 0.6
    assert ["k"] == r.overdue()


def test_expect_after_a_resync_drops_what_is_covered_and_releases_the_rest() -> None:
    """A resync to seq 6 drops held events up to 6 and hands on 7 and 8."""
    r = Reorderer()
    r.expect("k", 1)
    for s in (4, 6, 7, 8):
        r.push(ev(s))
    assert [7, 8] == seqs(r.expect("k", 6))
    assert (0, {"k": 8}) == (r.held("k"), r.positions)


def test_too_many_events_behind_one_gap_give_it_up_at_once() -> None:
    """More than max_held events behind a gap skip it without waiting, so memory stays bounded."""
    r = Reorderer(max_held=3)
    r.expect("k", 0)
    assert [] == r.push(ev(2)) + r.push(ev(3)) + r.push(ev(4))
    assert [2, 3, 4, 5] == seqs(r.push(ev(5)))


def test_positions_are_bounded_and_keep_the_freshest_keys() -> None:
    """Past max_keys the key changed longest ago is forgotten; positions list the freshest last."""
    r = Reorderer(max_keys=2)
    r.push(ev(1, key="a"))
    r.push(ev(1, key="b"))
    r.push(ev(2, key="a"))
    r.push(ev(1, key="c"))
    assert ["a", "c"] == list(r.positions)


def test_a_live_counters_newer_value_is_handed_on_at_once_and_an_older_one_dropped() -> None:
    """A bulk counter's seq skips the values the worker conflated: 7 after 3 goes on at once with no gap
    held, and 5 arriving late is dropped as older than what the client has."""
    order = Reorderer(hold_s=2, clock=Clock())
    counter = {"type": "event.attendance.updated", "key": "event:42"}
    assert [3] == seqs(order.push(counter | {"id": "a3", "seq": 3}))
    assert [7] == seqs(order.push(counter | {"id": "a7", "seq": 7}))
    assert ([], [], 0) == (
        order.push(counter | {"id": "a5", "seq": 5}),
        order.overdue(),
        order.held("event:42"),
    )
    assert [1] == seqs(order.push(ev(1)))  # another key, of an ordinary type, keeps its gaps
    assert ([], 1) == (order.push(ev(3)), order.held("k"))


def test_a_forgotten_key_has_no_position_no_held_events_and_no_gap() -> None:
    """forget (a revoked topic) drops the key's position and what it held, so no resume names it and its
    gap never comes due; the other keys keep theirs, and the key starts afresh if it comes back."""
    clock = Clock()
    reorder = Reorderer(hold_s=1.0, clock=clock)
    reorder.push(ev(1, "organization:7"))
    reorder.push(ev(3, "organization:7"))
    reorder.push(ev(1, "chat:c9"))
    reorder.forget("organization:7")
    clock.now += 5
    assert ({"chat:c9": 1}, [], 0) == (reorder.positions, reorder.overdue(), reorder.held("organization:7"))
    assert [5] == seqs(reorder.push(ev(5, "organization:7")))


def test_a_seq_no_resume_accepts_orders_nothing() -> None:
    """A seq below 0 or past 2^53-1 (a buggy producer) is handed on at once and takes no position: as a
    position, every later resume naming it would be refused bad_resume."""
    r = Reorderer()
    assert 1 == len(r.push(ev(-1)))
    assert 1 == len(r.push(ev(2**53, event_id="big")))
    assert 1 == len(r.push(ev(True, event_id="bool")))  # type: ignore[arg-type]
    assert {} == r.positions
    assert 1 == len(r.push(ev(2**53 - 1, event_id="max")))
    assert {"k": 2**53 - 1} == r.positions
