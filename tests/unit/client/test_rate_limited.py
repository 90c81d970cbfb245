"""What a refusal asks a client to do: wait its windowS (rate_limited), when that is a sane number of
seconds; leave out the topics it names (forbidden_topic)."""

from __future__ import annotations

from typing import Any

import pytest

from fanout.client.connection import MAX_WINDOW_S, rate_limited_wait, refused_topics


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


def _forbidden(**payload: Any) -> dict[str, Any]:
    return {"v": 1, "type": "system.error", "payload": {"code": "forbidden_topic", **payload}}


ASKED = ["organization:1", "organization:2", "event:3"]


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (
            _forbidden(topic="organization:1", topics=["organization:1", "organization:2"]),
            {"organization:1", "organization:2"},
        ),
        (_forbidden(topic="organization:2"), {"organization:2"}),  # a server before ``topics``
        (
            _forbidden(topic="organization:1", topics=["organization:1", "user:other", 7, None]),
            {"organization:1"},
        ),
        (_forbidden(topic="organization:1", topics="organization:2"), {"organization:1"}),
        (_forbidden(topic="user:other"), set()),
        (_forbidden(topics=[]), set()),
        (_forbidden(), set()),
        ({"v": 1, "type": "system.error", "payload": {"code": "too_many_topics", "topic": "event:3"}}, set()),
        ({"v": 1, "type": "subscribe.ok", "payload": {"code": "forbidden_topic", "topic": "event:3"}}, set()),
        ({"v": 1, "type": "system.error", "payload": ["forbidden_topic"]}, set()),
    ],
    ids=[
        "all-named",
        "one-named",
        "not-asked-dropped",
        "topics-not-list",
        "only-unasked",
        "empty",
        "none",
        "other-code",
        "not-an-error",
        "payload-not-object",
    ],  # fmt: skip
)
def test_a_forbidden_topic_refusal_names_the_asked_topics_to_leave_out(
    answer: dict[str, Any], refused: set[str]
) -> None:
    """Every asked topic a forbidden_topic refusal names (its ``topics``, else its one ``topic``) is left
    out of the next frame; a name not asked, not text, or another answer leaves out nothing, so the
    client stops asking rather than loop on the same frame."""
    assert refused == refused_topics(answer, ASKED)
