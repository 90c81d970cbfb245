"""The clients' process counts frames by event type, so one phase can time two kinds of event apart."""

from __future__ import annotations

import json

from fanout.bench.sink import Sink


def _frame(event_type: str, event_id: str) -> str:
    return json.dumps(
        {"v": 1, "id": event_id, "type": event_type, "payload": {}, "sentAt": "2026-01-01T00:00:00Z"}
    )


def test_frames_are_counted_and_timed_by_type_until_reset() -> None:
    """Two notices and a notification: counted per type, latencies per type on request; a reset clears them."""
    sink = Sink()
    for event_type, event_id in (
        ("system.notice", "e1"),
        ("notification.new", "e2"),
        ("system.notice", "e3"),
    ):
        sink.frame(_frame(event_type, event_id))
    sink.frame(json.dumps({"type": "ping.pong"}))  # a route reply, no id: not an event
    stats = sink.stats(latencies=False, by_type=True)
    assert {"system.notice": 2, "notification.new": 1} == stats["types"]
    assert [2, 1] == [len(stats["latencies_by_type"][t]) for t in ("system.notice", "notification.new")]
    assert 3 == stats["total"] and "latencies_by_type" not in sink.stats(latencies=True)
    sink.reset(track_ids=False)
    assert {} == sink.stats(latencies=False)["types"]
