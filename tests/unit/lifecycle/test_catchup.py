"""What a resume replays and what it resyncs: a pure decision from the kept events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fanout.history import Kept
from fanout.lifecycle.catchup import Plan, in_order, plan

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def k(event_id: str, seq: int | None = None, key: str | None = "c", at: int = 0, **extra: object) -> Kept:
    return Kept(event_id, NOW - timedelta(seconds=100 - at), key, seq, **extra)  # type: ignore[arg-type]


def decide(positions: dict[str, int], by_key: dict[str, list[Kept]], latest: dict[str, int],
           since: list[Kept] | None = None, named: bool = False, most: int = 100) -> Plan:  # fmt: skip
    return plan(
        positions, by_key, latest, since if named else [], named_event=named, now=NOW, max_replay=most
    )


def test_a_covered_key_replays_what_follows_its_position_in_seq_order() -> None:
    """Position 3 with seq 4..6 kept: 4, 5, 6 are replayed (even if kept out of seq order), no resync."""
    kept = [k("e4", 4, at=1), k("e6", 6, at=2), k("e5", 5, at=3)]
    assert Plan(("e4", "e5", "e6")) == decide(
        {"c": 3}, {"c": sorted(kept, key=lambda x: x.seq or 0)}, {"c": 6}
    )


def test_the_event_at_the_position_itself_proves_coverage() -> None:
    """When the client's own last seq is still kept, the key is covered even if the next one is missing
    (published and not yet kept): nothing is resynced."""
    assert Plan(("e7",)) == decide({"c": 5}, {"c": [k("e5", 5), k("e7", 7)]}, {"c": 7})


def test_a_gap_the_history_no_longer_covers_is_resynced_with_the_latest_seq() -> None:
    """Position 2 and the oldest kept is seq 6: the key is resynced to its latest seq, nothing replayed."""
    assert Plan((), {"c": 9}) == decide({"c": 2}, {"c": [k("e6", 6), k("e9", 9)]}, {"c": 9})


def test_nothing_kept_is_covered_only_when_nothing_was_published_since() -> None:
    """No kept event after the position: fine when the counter is at the position, a resync past it."""
    assert Plan() == decide({"c": 4}, {"c": []}, {"c": 4})
    assert Plan() == decide({"c": 4}, {"c": []}, {})
    assert Plan((), {"c": 8}) == decide({"c": 4}, {"c": []}, {"c": 8})


def test_a_wide_event_in_a_keys_range_resyncs_the_key() -> None:
    """A kept event recorded without its user list may have been the client's: the key is resynced."""
    assert Plan((), {"c": 5}) == decide({"c": 3}, {"c": [k("e4", 4), k("e5", 5, wide=True)]}, {"c": 5})


def test_a_last_event_id_no_longer_kept_resyncs_the_events() -> None:
    """A named last event id that the history has dropped means: refetch what has no key."""
    assert Plan((), {}, events=True) == decide({}, {}, {}, since=None, named=True)


def test_events_since_the_last_id_skip_what_positions_already_cover() -> None:
    """From the last event id on, events without a key are replayed, and keyed ones only past the
    client's position for their key."""
    since = [k("n1", key=None, at=1), k("c3", 3, at=2), k("c4", 4, at=3), k("n2", key=None, at=4)]
    assert Plan(("n1", "c4", "n2")) == decide({"c": 3}, {"c": [k("c3", 3, at=2), k("c4", 4, at=3)]}, {"c": 4},
                                              since=since, named=True)  # fmt: skip


def test_expired_events_are_not_replayed_but_still_cover() -> None:
    """An event past its own expiry is not replayed, and its seq still counts for coverage."""
    gone = k("e4", 4, until=NOW - timedelta(seconds=1))
    assert Plan(("e5",)) == decide(
        {"c": 3}, {"c": [gone, k("e5", 5, until=NOW + timedelta(hours=1))]}, {"c": 5}
    )


def test_more_than_the_bound_resyncs_everything_asked() -> None:
    """Over max_replay missed events: nothing is replayed, every key and the events are resynced."""
    kept = [k(f"e{s}", s, at=s) for s in range(4, 10)]
    assert Plan((), {"c": 9, "d": 2}, events=True) == decide(
        {"c": 3, "d": 2}, {"c": kept, "d": []}, {"c": 9}, since=[], named=True, most=5
    )


def test_in_order_sorts_by_time_and_each_key_by_seq_in_its_own_places() -> None:
    """Oldest first; where one key's events were kept out of seq order they swap within their places."""
    kept = [k("c2", 2, at=1), k("x", key=None, at=2), k("c1", 1, at=3), k("d1", 1, key="d", at=4)]
    assert ["c1", "x", "c2", "d1"] == [e.id for e in in_order(kept)]


def test_a_live_counter_replays_only_its_newest_value_and_is_never_resynced_for_a_gap() -> None:
    """A bulk counter's kept values skip what conflation dropped: position 2 with 6 and 9 kept replays 9
    alone, while an ordinary key with the same gap is resynced."""
    counter = "event.attendance.updated"
    kept = [k("a6", 6, key="event:42", type=counter), k("a9", 9, key="event:42", at=1, type=counter)]
    assert Plan(("a9",)) == decide({"event:42": 2}, {"event:42": kept}, {"event:42": 9})
    assert Plan((), {"c": 9}) == decide({"c": 2}, {"c": [k("e6", 6), k("e9", 9)]}, {"c": 9})
