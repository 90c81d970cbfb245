"""``subscribe``, ``notification.subscribe`` and ``unsubscribe``: topic interests on the connection record.

Each is answered with the connection's resulting topic list. A subscription is authorized topic by
topic (``access.AccessPolicy``); one refused topic refuses the frame, which names every refused one, and
nothing is stored. A topic the
product's check decides is asked again once stored, so a revocation cannot fall between the two.

Both are rate-limited per connection (``limits.py``) before any of that: a subscribe by the topics it
names, since each may cost two calls of the product's check; an unsubscribe, one write, by frames.
"""

from __future__ import annotations

from typing import Any

from fanout.lifecycle.access import valid_topic
from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.limits import limited
from fanout.lifecycle.replies import Response, error, reply

#: Topics one connection may hold in total, over all its frames.
MAX_TOPICS = 100
#: Topics one connection's subscribe frames may name per 10-second window (a frame of none counts one):
#: ten times what it may hold. A reconnecting tab names at most 100; one away while topics were revoked
#: names the rest once more after the refusal, which names them all (clients before the refusal's
#: ``topics`` dropped one per refusal: 100 + 99 + ..., 9 refusals of 100 topics fit). The product's check
#: is called at most twice per topic named: 2,000 calls per window, where frames were unbounded.
SUBSCRIBE_TOPICS_PER_WINDOW = 10 * MAX_TOPICS
#: Unsubscribe frames per connection per 10-second window: one per subscriber a page closes, at most.
UNSUBSCRIBES_PER_WINDOW = 100


def _topics(frame: Frame) -> list[str] | None:
    topics: Any = frame.body.get("topics", [])
    if not isinstance(topics, list) or len(topics) > MAX_TOPICS or not all(valid_topic(t) for t in topics):
        return None
    return list(dict.fromkeys(topics))


async def subscribe(services: Services, frame: Frame) -> Response:
    """Add the frame's ``topics``; answered with ``subscribe.ok`` and the resulting list."""
    topics = _topics(frame)
    if topics is None:
        return error("bad_topics", frame.reply_to, pattern="kind:id", max=MAX_TOPICS)
    if over := await limited(services, frame, "subscribe", SUBSCRIBE_TOPICS_PER_WINDOW, len(topics)):
        return over
    access = services.access
    if refused := [t for t in topics if not await access.allows(frame.user_id, t)]:
        return _forbidden(frame, refused)
    held = await services.store.subscribe(frame.connection_id, topics, MAX_TOPICS)
    if held is None:
        return error("too_many_topics", frame.reply_to, max=MAX_TOPICS)
    # Asked again once stored: a revocation the worker applied between the first answer and the write
    # would be undone by it. The product changes its access before it publishes the revocation, so this
    # answer sees it, and what it refuses is taken back.
    refused = [t for t in topics if access.gated(t) and not await access.allows(frame.user_id, t)]
    if refused:
        await services.store.unsubscribe(frame.connection_id, refused)
        return _forbidden(frame, refused)
    return reply("subscribe.ok", {"topics": held}, frame.reply_to)


def _forbidden(frame: Frame, refused: list[str]) -> Response:
    """``forbidden_topic`` naming every refused topic of the frame (``topics``, in the frame's order), so
    a client drops them all in one go; ``topic``, the first, is what clients before ``topics`` read."""
    return error("forbidden_topic", frame.reply_to, topic=refused[0], topics=refused)


async def unsubscribe(services: Services, frame: Frame) -> Response:
    """Remove the frame's ``topics``; answered with ``unsubscribe.ok`` and the resulting list."""
    topics = _topics(frame)
    if topics is None:
        return error("bad_topics", frame.reply_to, pattern="kind:id", max=MAX_TOPICS)
    if refused := await limited(services, frame, "unsubscribe", UNSUBSCRIBES_PER_WINDOW):
        return refused
    held = await services.store.unsubscribe(frame.connection_id, topics)
    return reply("unsubscribe.ok", {"topics": held}, frame.reply_to)
