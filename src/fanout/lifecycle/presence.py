"""Presence from the lifecycle's side: ``$connect`` and ``$disconnect`` announce real changes, and
``presence.query`` answers the current state of a list of users. docs/protocol.md section 17.

- The first connection of a user announces ``online`` to the users allowed to see it (``live.
  PresenceAudience``); further tabs announce nothing.
- The last disconnect schedules a presence check ``FANOUT_PRESENCE_GRACE_S`` later, which the worker posts
  as ``offline`` only if the user is still gone (``live/presence.py``): a reconnect in between does not
  flap. With nobody allowed to see the user, the document is set offline at once and nothing is sent.

Presence is secondary to the connection: a failure here is logged and the route still succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fanout.catalog import UserPresenceUpdated
from fanout.lifecycle.chat import ident
from fanout.lifecycle.context import Frame, Services
from fanout.lifecycle.emit import Outgoing, emit
from fanout.lifecycle.limits import limited
from fanout.lifecycle.replies import Response, error, reply
from fanout.live import events
from fanout.logging import get_logger

log = get_logger("fanout.lifecycle")

#: Users one presence.query may name.
MAX_QUERY = 100
#: Users one connection's presence.query frames may name per 10-second window: five full queries, or a
#: page asking user by user for each avatar it shows. Each frame reads MongoDB (or calls the product's
#: audience function once per user named), so the limit counts users, not frames.
PRESENCE_USERS_PER_WINDOW = 5 * MAX_QUERY


async def connected(services: Services, user_id: str) -> None:
    """After ``$connect`` stored the record: announce the user online if this is their first connection."""
    if not services.settings.presence:
        return
    live = services.live
    try:
        if await live.presence.online(user_id) and (audience := await live.audience.of(user_id)):
            await emit(
                services,
                Outgoing(events.event(UserPresenceUpdated(user_id=user_id, status="online"), audience)),
            )
    except Exception as exc:  # the connection stands without its announcement
        log.warning("presence_failed", route="$connect", error=type(exc).__name__)


async def disconnected(services: Services, user_id: str) -> None:
    """After ``$disconnect`` removed the record: if it was the user's last, schedule the offline check."""
    if not services.settings.presence:
        return
    live = services.live
    try:
        now = datetime.now(UTC)
        if not await live.presence.left(user_id, now):
            return
        if audience := await live.audience.of(user_id):
            grace = services.settings.presence_grace_s
            offline = events.offline(user_id, now, audience, sent_at=now + timedelta(seconds=grace))
            if await emit(services, Outgoing(offline, grace, "presence")):
                return
        await live.presence.offline(user_id, now)  # nobody to tell, or no queue to tell them through
    except Exception as exc:
        log.warning("presence_failed", route="$disconnect", error=type(exc).__name__)


async def query(services: Services, frame: Frame) -> Response:
    """``{"action":"presence.query","userIds":["u2","u3"]}``: answered ``presence.ok`` with the users the
    connection's user may see (themself, and those whose audience holds them); others are left out."""
    wanted = frame.body.get("userIds")
    if not (isinstance(wanted, list) and 0 < len(wanted) <= MAX_QUERY and all(ident(u) for u in wanted)):
        return error("bad_request", frame.reply_to, field="userIds", max=MAX_QUERY)
    users = list(dict.fromkeys(wanted))
    if refused := await limited(services, frame, "presence", PRESENCE_USERS_PER_WINDOW, len(users)):
        return refused
    visible = await services.live.audience.visible(frame.user_id, users)
    rows = await services.live.presence.current([u for u in users if u in visible])
    return reply("presence.ok", {"users": rows}, frame.reply_to)
