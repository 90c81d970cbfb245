"""What a server's frame asks the reference client to do: the heartbeat a hello's answer sets, and the
reconnect a system.reconnect asks for (docs/client.md, as fanout.js does)."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.client.connection import MAX_RECONNECT_AFTER_S, heartbeat_of, reconnect_after


@pytest.mark.parametrize(
    ("beat", "kept"),
    [(10, 10.0), (1, 1.0), (60, 30.0), (0.001, 30.0), (0, 30.0), (-5, 30.0), ("10", 30.0), (True, 30.0),
     (float("nan"), 30.0), (None, 30.0)],
)  # fmt: skip
def test_a_hello_sets_a_shorter_heartbeat_of_at_least_a_second(beat: Any, kept: float) -> None:
    """A heartbeatS shorter than the client's (30 s) is followed when it is a number of at least 1 s;
    anything else (a millisecond: about 500 pings a second, each a write of the record) is not."""
    assert kept == heartbeat_of({"heartbeatS": beat}, 30.0)


def _reconnect(**payload: Any) -> dict[str, Any]:
    return {"v": 1, "id": "evt_1", "type": "system.reconnect", "payload": payload, "sentAt": "x"}


@pytest.mark.parametrize(
    ("frame", "after"),
    [
        (_reconnect(reason="maintenance", afterMs=5000), 5.0),
        (_reconnect(afterMs=0), 0.0),
        (_reconnect(), 1.0),
        (_reconnect(afterMs="5000"), 1.0),
        (_reconnect(afterMs=-1), 1.0),
        (_reconnect(afterMs=10**12), MAX_RECONNECT_AFTER_S),
        (_reconnect(reason="upgrade", eventType="chat.message", payloadVersion=2), None),
        ({"v": 1, "id": "evt_2", "type": "notification.new", "payload": {"afterMs": 0}}, None),
    ],
    ids=["after", "at-once", "no-after", "text", "negative", "a-year", "upgrade", "other-type"],
)
def test_a_reconnect_ask_is_followed_within_its_after_but_not_to_upgrade(
    frame: dict[str, Any], after: float | None
) -> None:
    """A system.reconnect is followed within afterMs (1 s without a sane one, at most 5 minutes: a tab
    kept away longer misses every event meanwhile); an upgrade ask, or any other event, is not."""
    assert after == reconnect_after(frame)
