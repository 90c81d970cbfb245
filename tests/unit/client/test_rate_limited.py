"""What a rate_limited refusal asks a client to wait: its windowS, when that is a sane number of seconds."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.client.connection import MAX_WINDOW_S, rate_limited_wait


def _refusal(**payload: Any) -> dict[str, Any]:
    return {"v": 1, "type": "system.error", "payload": {"code": "rate_limited", "max": 5, **payload}}


def test_a_rate_limited_refusal_asks_for_its_window() -> None:
    """windowS of a rate_limited system.error is the wait, in seconds, whole or not."""
    assert (10.0, 0.5, MAX_WINDOW_S) == tuple(
        rate_limited_wait(_refusal(windowS=w)) for w in (10, 0.5, MAX_WINDOW_S)
    )


@pytest.mark.parametrize(
    "answer",
    [
        {"v": 1, "type": "subscribe.ok", "payload": {"topics": []}},
        {"v": 1, "type": "system.error", "payload": {"code": "forbidden_topic", "windowS": 10}},
        {"v": 1, "type": "system.error", "payload": "rate_limited"},
        _refusal(),
        _refusal(windowS="10"),
        _refusal(windowS=True),
        _refusal(windowS=0),
        _refusal(windowS=-1),
        _refusal(windowS=float("nan")),
        _refusal(windowS=MAX_WINDOW_S + 1),
    ],
    ids=[
        "ok",
        "other-code",
        "payload-not-object",
        "no-window",
        "text",
        "bool",
        "zero",
        "negative",
        "nan",
        "long",
    ],
)
def test_any_other_answer_or_an_insane_window_asks_for_no_wait(answer: dict[str, Any]) -> None:
    """Another answer, or a window that is missing, not a number, not positive or over a minute: no wait,
    so the refusal is the frame's answer."""
    assert rate_limited_wait(answer) is None
