"""``resume``: a client that reconnects gets what it missed, in order, then live events.

``{"action":"resume","id":"r1","positions":{"conversation:c9":41},"lastEventId":"evt_..."}``. Every key
must be a stream the connection may follow: its own user's (``user:<own id>``), a topic it has
subscribed, or one the access policy allows; anything else refuses the frame (``forbidden_stream``).
What is replayed is filtered again to the connection's own user, its topics and broadcasts
(``history.audience``), so a forged id or key can never reach another user's events.

The answer is ``resume.ok`` with the number of events on their way, or ``system.resync`` naming what the
history no longer covers. The missed frames themselves come through the worker (``replays.py``).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from fanout.envelope import MAX_SEQ
from fanout.history import Kept, audience
from fanout.lifecycle import catchup, replays
from fanout.lifecycle.access import valid_topic
from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.limits import limited
from fanout.lifecycle.replies import Response, error, reply

#: Keys one resume may name; a client that follows more resumes the ones it needs most.
MAX_POSITIONS = 100
#: Earlier connection ids of the resuming tab one resume may name.
MAX_EARLIER = 10
#: Resumes one connection may send per 10-second window. A tab resumes after it connects (the clients
#: try again up to 5 times without a refused key) and on a gap; each resume may queue a replay of up to
#: ``FANOUT_HISTORY_MAX_REPLAY`` posts through the shared lanes.
RESUMES_PER_WINDOW = 10
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def _earlier(value: Any) -> list[str] | None:
    """The tab's earlier connection ids: a list of at most ``MAX_EARLIER`` ids; None when malformed."""
    if not isinstance(value, list) or len(value) > MAX_EARLIER:
        return None
    if not all(isinstance(c, str) and 0 < len(c) <= 128 for c in value):
        return None
    return value


def parse(body: dict[str, Any]) -> tuple[dict[str, int], str | None, list[str]] | None:
    """(positions, last event id, earlier connection ids) of a resume frame; None when it is malformed."""
    positions: Any = body.get("positions", {})
    last: Any = body.get("lastEventId")
    earlier = _earlier(body.get("connectionIds", []))
    if earlier is None:
        return None
    if not isinstance(positions, dict) or len(positions) > MAX_POSITIONS:
        return None
    for key, seq in positions.items():
        if (
            not valid_topic(key)
            or isinstance(seq, bool)
            or not isinstance(seq, int)
            or not 0 <= seq <= MAX_SEQ
        ):
            return None
    if last is not None and not (isinstance(last, str) and _EVENT_ID.fullmatch(last)):
        return None
    if not positions and last is None:
        return None
    return dict(positions), last, earlier


async def resume(services: Services, frame: Frame) -> Response:
    """Replay what the connection missed, or say what it must refetch."""
    parsed = parse(frame.body)
    if parsed is None:
        return error(
            "bad_resume",
            frame.reply_to,
            message="positions: {kind:id: seq >= 0} (at most 100), lastEventId, connectionIds (at most 10)",
        )
    if refused := await limited(services, frame, "resume", RESUMES_PER_WINDOW):
        return refused
    positions, last, earlier = parsed
    held = await services.store.interests(frame.connection_id)
    topics = held[1] if held is not None else []
    for key in positions:
        if key not in topics and not await services.access.allows(frame.user_id, key):
            return error("forbidden_stream", frame.reply_to, key=key)
    history = services.history
    latest = await history.latest(positions)
    if not history.enabled:  # nothing is kept: everything asked must be refetched
        keys = {k: latest.get(k, s) for k, s in positions.items()}
        return reply(
            "system.resync", {"keys": keys, "events": last is not None, "replaying": 0}, frame.reply_to
        )
    who = audience(frame.user_id, topics)
    limit = history.max_replay + 1
    at = await history.recorded_at(last, who) if last is not None else None
    since: list[Kept] | None = [] if last is None else None
    if at is not None:
        # What excluded this tab's connections was its own change: never its echo (protocol section 12).
        since = await history.since(at, who, limit, [frame.connection_id, *earlier])
    found = await asyncio.gather(*(history.of_key(k, s, who, limit) for k, s in positions.items()))
    plan = catchup.plan(
        positions,
        dict(zip(positions, found, strict=True)),
        latest,
        since,
        named_event=last is not None,
        now=datetime.now(UTC),
        max_replay=history.max_replay,
    )
    if plan.replay:
        await replays.send(services.events, frame.connection_id, plan.replay)
    if plan.resync:
        payload = {"keys": plan.keys, "events": plan.events, "replaying": len(plan.replay)}
        return reply("system.resync", payload, frame.reply_to)
    return reply("resume.ok", {"replaying": len(plan.replay)}, frame.reply_to)
